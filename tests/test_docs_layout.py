"The docs sidebar lists every notebook, so nbdev_docs renders them all in their sections."
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_sidebar_lists_every_notebook():
    side = yaml.safe_load((ROOT / "nbs" / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    listed = set()
    for entry in side:
        listed |= set(entry["contents"]) if isinstance(entry, dict) else {entry}
    on_disk = {str(p.relative_to(ROOT / "nbs")) for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in str(p)}
    assert listed == on_disk, (on_disk - listed, listed - on_disk)

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


def test_committed_outputs_hold_no_machine_paths_or_warnings():
    "The rendered docs show what a reader needs: no paths of the machine that ran the notebook, no library warnings or adverts."
    import json
    import re
    bad = re.compile(r"/work/|/tmp/|/root/|/home/|Warning:|lightning\.ai|litlogger|GPU available|TPU available|Restored all states")
    found = []
    for nb in sorted((ROOT / "nbs").rglob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
                if bad.search(text): found.append(f"{nb.name} cell {cell.get('id')}: {bad.search(text).group(0)}")
    assert not found, found

"Packaging, imports and the README generator: what a user meets before any math."
import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def settings():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    return cfg["DEFAULT"]


def test_core_requirements_are_light_and_torch_is_a_range():
    reqs = settings()["requirements"].split()
    names = {r.split("=")[0].split(">")[0].split("<")[0].lower() for r in reqs}
    assert "torch>=2.2" in reqs                          # a range: GPU users keep their CUDA build
    assert not any(r.startswith("torch==") for r in reqs)
    assert "torchvision" not in names                    # never: its only build here breaks imports
    assert not names & {"nbdev", "jupyter", "papermill", "pytest", "natten", "flash-attn", "lpips"}
    assert "matplotlib" in names                         # the README's ds.plot(...) works after a plain install


def test_dev_extra_pins_nbdev2_toolchain():
    dev = settings()["dev_requirements"].split()
    assert "nbdev==2.4.14" in dev
    assert any(r.startswith("execnb") and "<0.2" in r for r in dev)
    assert any(r.startswith("fastcore") and "<2" in r for r in dev)
    assert "tags" in settings()["allowed_cell_metadata_keys"].split()


def test_setup_py_declares_only_extras_that_install():
    out = subprocess.run([sys.executable, "setup.py", "--name", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["emrdm", settings()["version"]]
    meta = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print('\\n'.join(m.requires('emrdm')))"],
                          capture_output=True, text=True)
    assert meta.returncode == 0, meta.stderr
    extras = set(re.findall(r'extra == "([^"]+)"', meta.stdout))
    # natten and flash-attn build against the installed torch (no build isolation), lpips pulls a torchvision built
    # for another torch: as extras they broke installs, so the README says how to install each instead
    assert extras == {"dev", "tensorboard"}, extras


def test_long_description_links_are_absolute():
    "PyPI shows the README without the repository: every image and link in the long description must be a URL."
    out = subprocess.run([sys.executable, "setup.py", "--long-description"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    links = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", out.stdout)
    assert any(link.endswith("nbs/images/demo.jpg") for link in links)
    assert all(re.match(r"https?://|#", link) for link in links), [l for l in links if not re.match(r"https?://|#", l)]


def test_license_metadata_is_spdx():
    assert (ROOT / "LICENSE").read_text().startswith("\n                                 Apache License")
    setup = (ROOT / "setup.py").read_text()
    assert settings()["license_spdx"] == "Apache-2.0" and "license_expression=" in setup and "License ::" not in setup


def test_import_is_light():
    "Importing the core pulls in neither plotting, notebooks nor GPU-only packages."
    code = ("import sys, emrdm, emrdm.core, emrdm.schedule, emrdm.precond, emrdm.diffusion, emrdm.samplers;"
            "bad = [m for m in ('matplotlib', 'IPython', 'torchvision', 'natten', 'flash_attn', 'lpips') if m in sys.modules];"
            "print(bad); assert not bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_version_matches_settings():
    import emrdm
    assert emrdm.__version__ == settings()["version"]


def test_readme_is_rendered_from_index(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import readme
    assert (ROOT / "README.md").read_text() == readme.render(ROOT / "nbs" / "index.ipynb")
    stale = tmp_path / "README.md"
    stale.write_text((ROOT / "README.md").read_text() + "\nedited by hand\n")
    assert readme.main(["--nb", str(ROOT / "nbs/index.ipynb"), "--out", str(stale), "--check"]) == 1


def test_readme_renderer_rules(tmp_path):
    "Hidden cells vanish, echo: false keeps only outputs, directives are stripped, text outputs are kept."
    sys.path.insert(0, str(ROOT / "tools"))
    import readme
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# t\n", "\n", "> d"]},
        {"cell_type": "code", "metadata": {}, "source": ["#| hide\n", "secret = 1"], "outputs": [], "execution_count": None},
        {"cell_type": "code", "metadata": {}, "source": ["#| echo: false\n", "print('shown')"], "execution_count": None,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["shown\n"]}]},
        {"cell_type": "code", "metadata": {}, "source": ["x = 2\n", "x"], "execution_count": None,
         "outputs": [{"output_type": "execute_result", "metadata": {}, "execution_count": None, "data": {"text/plain": ["2"]}}]},
    ]
    nb = tmp_path / "index.ipynb"
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    text = readme.render(nb)
    assert "secret" not in text and "echo" not in text and "print('shown')" not in text
    assert "```\nshown\n```" in text and "```python\nx = 2\nx\n```" in text and "```\n2\n```" in text


def test_readme_image_links_resolve(tmp_path):
    "Images linked from index.ipynb (relative to nbs/) must resolve from the README at the top; URLs stay as they are."
    sys.path.insert(0, str(ROOT / "tools"))
    import readme
    (tmp_path / "nbs").mkdir()
    cell = {"cell_type": "markdown", "metadata": {}, "source": ["![a](images/x.jpg) ![b](https://e.org/y.png) ![c](/abs/z.png)"]}
    nb = tmp_path / "nbs" / "index.ipynb"
    nb.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    text = readme.render(nb)
    assert "![a](nbs/images/x.jpg)" in text and "![b](https://e.org/y.png)" in text and "![c](/abs/z.png)" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    local = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert local, "the README shows a results figure"
    for link in local: assert (ROOT / link).is_file(), f"README links a missing image {link}"


def test_top_level_quarto_config_is_nbdevs():
    top, nbs = ROOT / "_quarto.yml", ROOT / "nbs" / "_quarto.yml"
    assert nbs.is_file() and top.exists()
    assert top.resolve() == nbs.resolve()


@pytest.mark.parametrize("nb", sorted((ROOT / "nbs").glob("[0-9]*.ipynb")), ids=lambda p: p.stem)
def test_numbered_notebooks_export_a_module(nb):
    cells = json.loads(nb.read_text())["cells"]
    first = "".join(cells[0]["source"])
    assert first.startswith("#| default_exp "), f"{nb.name} must start with a default_exp cell"
    module = first.split()[-1]
    assert (ROOT / "emrdm" / (module.replace(".", "/") + ".py")).exists()


def test_wheel_ships_modules_and_configs(tmp_path):
    "`pip install emrdm` must get every exported module and every packaged YAML config."
    import zipfile
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("emrdm-*.whl"))).namelist()
    for module in ROOT.glob("emrdm/**/*.py"):
        assert str(module.relative_to(ROOT)) in names, module
    for config in ROOT.glob("emrdm/configs/**/*.yaml"):
        assert str(config.relative_to(ROOT)) in names, config


def test_make_docs_without_quarto_changes_nothing(tmp_path):
    "Without Quarto, nbdev_docs would run an installer with the first pip on PATH: make docs must stop before that."
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "-s", "docs", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [l for l in (out.stdout + out.stderr).strip().splitlines() if not l.startswith("make: ***")]   # make's own
    assert len(lines) == 1 and "Quarto" in lines[0] and "install" in lines[0], lines
    assert not venv.exists()                                   # no venv made, nothing installed


def test_make_targets_use_the_venvs_tools(tmp_path):
    "Every target finds pip and python in the venv before the system's."
    bin_ = tmp_path / "venv" / "bin"; bin_.mkdir(parents=True)
    for tool in ("pip", "python"):
        (bin_ / tool).write_text("#!/bin/sh\n"); (bin_ / tool).chmod(0o755)
    out = subprocess.run(["make", "-s", "--eval", "where: ; @command -v pip python", "where", f"VENV={tmp_path / 'venv'}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(bin_ / "pip"), str(bin_ / "python")]

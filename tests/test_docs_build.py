"""The documentation builds: nbdev's doc processor (the part of `nbdev_docs` before Quarto) runs clean over every
notebook, the pages document the methods users call, and the GitHub workflows test the project and deploy the site."""
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOWS = ROOT / ".github" / "workflows"


def notebooks() -> list[Path]:
    "Every notebook under nbs/, relative to it."
    return sorted(p.relative_to(ROOT / "nbs") for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    "`nbdev_proc_nbs` on a copy of the repository (it writes _proc/, nbs/nbdev.yml and emrdm/_modidx.py): (result, _proc)."
    work = tmp_path_factory.mktemp("docs")
    repo = work / "repo"
    repo.mkdir()
    shutil.copy2(ROOT / "settings.ini", repo)
    for d in ("nbs", "emrdm"):
        shutil.copytree(ROOT / d, repo / d, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", ".quarto"))
    env = dict(os.environ, PYTHONPATH=str(repo))                                   # the copy's package, not the tree's
    if shutil.which("quarto") is None:
        # Without Quarto, nbdev_proc_nbs tries to install it (sudo) and then runs `pip install -e .`; it only looks for
        # the command, so a stub stops that.
        (work / "bin").mkdir()
        (work / "bin" / "quarto").write_text("#!/bin/sh\nexit 0\n")
        (work / "bin" / "quarto").chmod(0o755)
        env["PATH"] = f"{work / 'bin'}{os.pathsep}{env['PATH']}"
    res = subprocess.run([str(BIN / "nbdev_proc_nbs")], cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    return res, repo / "_proc"


def test_every_notebook_is_processed_for_the_docs(processed):
    res, proc = processed
    errors = "\n".join(dict.fromkeys(re.findall(r"^\w*(?:Error|Exception): .*$", res.stderr, re.M)))
    assert res.returncode == 0, f"nbdev_proc_nbs failed:\n{errors}\n{res.stderr[-3000:]}"
    missing = [str(nb) for nb in notebooks() if not (proc / nb).is_file()]
    assert not missing, f"nbdev_proc_nbs wrote no processed notebook for {missing}"


def test_building_the_docs_runs_no_test_code(processed):
    # nbdev runs every cell that holds an import to render show_doc; a test cell with an import runs out of order
    # (NameError on names from skipped cells) and repeats its work (training!) in every docs build.
    res, _ = processed
    mixed = re.findall(r"Found cells containing imports and other code\. See FAQ\.\n---\n(.*?)\n---", res.stderr, re.S)
    assert not mixed, "move these imports into the notebook's hidden import cell:\n" + "\n-----\n".join(mixed)


def headings(proc: Path, nb: str) -> set[str]:
    "The names that the show_doc outputs of processed notebook `nb` render as headings."
    found = set()
    for cell in json.loads((proc / nb).read_text())["cells"]:
        for out in cell.get("outputs", []):
            md = out.get("data", {}).get("text/markdown", "")
            found |= set(re.findall(r"^#{2,4} (\S+)$", "".join(md), re.M))
    return found


def public_methods(cls) -> list[str]:
    "Methods, classmethods and staticmethods written in `cls`'s body, without aliases such as `forward = denoise`."
    names = []
    for name, v in vars(cls).items():
        if name.startswith("_"): continue
        f = v.__func__ if isinstance(v, (classmethod, staticmethod)) else getattr(v, "f", v)   # .f: fastcore's patch(cls_method=True)
        if inspect.isfunction(f) and f.__name__ == name: names.append(name)
    return names


def test_the_model_page_documents_every_public_method(processed):
    import emrdm.checkpoint                                        # attaches EMRDM.save and EMRDM.load (the one door)
    from emrdm.model import EMRDM
    methods = public_methods(EMRDM)
    assert {"from_config", "denoise", "loss", "sample", "temporal_attention", "save", "load"} <= set(methods)
    assert EMRDM.load is EMRDM.from_official_checkpoint is emrdm.checkpoint.load
    model_page, checkpoint_page = headings(processed[1], "08_model.ipynb"), headings(processed[1], "09_checkpoint.ipynb")
    assert "EMRDM" in model_page
    missing = [m for m in methods if f"EMRDM.{m}" not in model_page and m not in checkpoint_page]
    assert not missing, f"add show_doc(EMRDM.{{name}}) cells to nbs/08_model.ipynb (or 09_checkpoint.ipynb) for {missing}"


SHOWN_METHODS = {                                                  # page: (module, the methods users call)
    "06_hdit.ipynb": ("emrdm.nn.hdit", ["HDiT.forward", "HDiT.set_checkpointing", "HDiT.noise_embedding"]),
    "07_temporal.ipynb": ("emrdm.nn.temporal", ["TemporalHDiT.forward"]),
    "10_data.ipynb": ("emrdm.data.core", ["CloudRemovalDataset.files", "CloudRemovalDataset.plot", "RandomCrop.set_epoch"]),
    "10_data_check.ipynb": ("emrdm.data.check", ["CheckReport.table"]),
    "11_metrics.ipynb": ("emrdm.metrics", ["LPIPS.forward", "MetricsLog.add", "MetricsLog.summary", "MetricsLog.table",
                                           "MetricsLog.to_csv", "MetricsLog.summary_csv"]),
}


@pytest.mark.parametrize("nb", sorted(SHOWN_METHODS))
def test_pages_document_the_methods_users_call(processed, nb):
    module, methods = SHOWN_METHODS[nb]
    missing = [m for m in methods if m not in headings(processed[1], nb)]
    assert not missing, f"add show_doc(...) cells to nbs/{nb} for {missing}"
    mod = importlib.import_module(module)
    for m in methods:                                                 # its own docstring, not one inherited from torch
        cls, name = m.split(".")
        assert (vars(getattr(mod, cls))[name].__doc__ or "").strip(), f"{m} has no docstring"


def test_long_signatures_document_each_parameter():
    from fastcore.docments import docments
    from emrdm.model import EMRDM
    for name in public_methods(EMRDM):
        f = getattr(EMRDM, name)
        assert (f.__doc__ or "").strip(), f"EMRDM.{name} has no docstring"
        params = [p for p in inspect.signature(f).parameters.values()
                  if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if len(params) > 3:
            docs = docments(f)
            undocumented = [p.name for p in params if not docs.get(p.name)]
            assert not undocumented, f"EMRDM.{name}: document {undocumented} with a trailing comment (docments)"


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(wf: dict) -> dict:
    return wf.get("on", wf.get(True)) or {}                                         # YAML 1.1 reads `on` as True


def steps(wf: dict) -> list[dict]:
    return [s for job in wf["jobs"].values() for s in job["steps"]]


def test_the_test_workflow_runs_the_readmes_checks():
    wf = workflow("test.yaml")
    assert {"push", "pull_request"} <= set(triggers(wf))
    uses = [s.get("uses", "") for s in steps(wf)]
    runs = [s.get("run", "") for s in steps(wf)]
    assert any(u.startswith("actions/checkout@") for u in uses)
    setup = [s for s in steps(wf) if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup and str(setup[0]["with"]["python-version"]) == "3.11"
    assert any(".ci/constraints-cpu.txt" in r for r in runs), "install with the CPU torch pin"
    assert "make test" in runs and "make check" in runs
    assert runs.index("make test") < runs.index("make check")                      # the drift check also sees test leftovers


def test_the_deploy_workflow_publishes_the_site_to_pages():
    wf = workflow("deploy.yaml")
    assert triggers(wf)["push"]["branches"] == ["main"]
    by_uses = {s["uses"].split("@")[0]: s for s in steps(wf) if "uses" in s}
    assert {"quarto-dev/quarto-actions/setup", "actions/upload-pages-artifact", "actions/deploy-pages"} <= set(by_uses)
    runs = [s.get("run", "") for s in steps(wf)]
    assert any("make docs" in r or "nbdev_docs" in r for r in runs)
    settings = (ROOT / "settings.ini").read_text()
    doc_path = re.search(r"^doc_path\s*=\s*(\S+)", settings, re.M).group(1)
    assert by_uses["actions/upload-pages-artifact"]["with"]["path"] == doc_path
    deploy = next(j for j in wf["jobs"].values() if any(s.get("uses", "").startswith("actions/deploy-pages@") for s in j["steps"]))
    perms = {**wf.get("permissions", {}), **deploy.get("permissions", {})}
    assert perms.get("pages") == "write" and perms.get("id-token") == "write"
    assert deploy["environment"]["name"] == "github-pages"

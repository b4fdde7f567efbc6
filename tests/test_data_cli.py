"Datasets on disk through the `emrdm` command and DataLoaders: fake layouts of every dataset, good and broken."
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emrdm.data import open_dataset
from emrdm.data.cuhk import write_fake_cuhk
from emrdm.data.folder import write_fake_folder
from emrdm.data.sen12mscr import write_fake_sen12mscr
from emrdm.data.sen2mtc import write_fake_sen2mtc

EMRDM = [str(Path(sys.executable).parent / "emrdm")]


def run(*args):
    return subprocess.run(EMRDM + list(args), capture_output=True, text=True)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_cuhk(root / "CUHK-CR1", root / "nir" / "CUHK-CR1")
    write_fake_sen12mscr(root / "SEN12MSCR")
    write_fake_sen2mtc(root / "Sen2_MTC_New")
    write_fake_folder(root / "mine")
    return root


@pytest.mark.parametrize("dataset, sub, extra", [
    ("cuhk-cr1", "CUHK-CR1", ["--nir", "nir/CUHK-CR1"]), ("sen12mscr", "SEN12MSCR", []),
    ("sen2mtc", "Sen2_MTC_New", []), ("folder", "mine", [])])
def test_check_passes_on_clean_layouts(layouts, dataset, sub, extra):
    extra = [str(layouts / e) if "/" in e else e for e in extra]
    out = run("data", "check", "--dataset", dataset, str(layouts / sub), "--quiet", *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no problems found" in out.stdout


def test_check_fails_with_named_files(tmp_path):
    write_fake_cuhk(tmp_path / "CR", tmp_path / "nir")
    (tmp_path / "nir/test/cloud/test_0001.png").unlink()                         # a missing NIR partner
    out = run("data", "check", "--dataset", "cuhk-cr1", str(tmp_path / "CR"), "--nir", str(tmp_path / "nir"), "--quiet")
    assert out.returncode == 1 and "no NIR file for 1 image(s)" in out.stdout
    out = run("data", "check", "--dataset", "sen2mtc", str(tmp_path / "CR"), "--quiet")     # wrong layout
    assert out.returncode == 1 and "missing split file" in out.stdout


@pytest.mark.parametrize("name, sub, opts, keys, shapes", [
    ("cuhk-cr1", "CUHK-CR1", {"nir_root": "nir/CUHK-CR1"}, {"target", "mu", "cond", "path"}, [(2, 4, 32, 32)] * 3),
    ("sen12mscr", "SEN12MSCR", {"split": "test"}, {"target", "mu", "cond", "path"}, [(2, 13, 32, 32), (2, 13, 32, 32), (2, 15, 32, 32)]),
    ("sen2mtc", "Sen2_MTC_New", {}, {"target", "mu", "cond", "path"}, [(2, 3, 32, 32), (2, 3, 3, 32, 32), (2, 3, 4, 32, 32)]),
    ("folder", "mine", {"split": "all"}, {"target", "mu", "cond", "path", "mask"}, [(2, 4, 32, 32), (2, 4, 32, 32), (2, 6, 32, 32)])])
def test_batches_from_dataloader_with_workers(layouts, name, sub, opts, keys, shapes):
    opts = {k: (layouts / v if k == "nir_root" else v) for k, v in opts.items()}
    ds = open_dataset(name, layouts / sub, **opts)
    for workers in (0, 2):
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers)))
        assert set(batch) == keys
        assert [tuple(batch[k].shape) for k in ("target", "mu", "cond")] == shapes
        assert all(torch.isfinite(batch[k]).all() for k in ("target", "mu", "cond"))
        assert all(batch[k].abs().max() <= 3 for k in ("target", "mu", "cond"))          # model space, about [-1, 1]


def test_sen2mtc_augmentation_identical_across_workers(layouts):
    "Augmentation depends on the sample index only: 0 workers and 2 workers give the same batches."
    ds = open_dataset("sen2mtc", layouts / "Sen2_MTC_New", "train", seed=3)
    a = [b["cond"] for b in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=0)]
    b = [b["cond"] for b in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))

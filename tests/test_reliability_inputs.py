"""Bad input (issue 13): configurations, `--set`, checkpoints, devices and dataset checks. Every mistake a user can make
is one `error:` line with exit status 2 and no traceback; `--set` applies whichever way the model is chosen."""
import contextlib
import io
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from emrdm.cli import main
from emrdm.data.check import file_info
from emrdm.data.cuhk import write_fake_cuhk
from emrdm.data.folder import write_fake_folder
from emrdm.model import EMRDM, load_config
from emrdm.train import fit

EMRDM_CMD = str(Path(sys.executable).parent / "emrdm")
RGB = {"data.use_nir": False, "network.in_channels": 6, "network.out_channels": 3}       # tiny-cuhk without NIR
SETS = [a for k, v in RGB.items() for a in ("--set", f"{k}={str(v).lower()}")]
FAST = ["--tile", "64", "--overlap", "16", "--quiet"]


def cli(*argv) -> tuple[int, str, str]:
    "Run `emrdm argv` in this process: (exit code, stdout, stderr); an exception escaping main fails the test."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = main([str(a) for a in argv])
        except SystemExit as e: rc = e.code
    return rc, out.getvalue(), err.getvalue()


def one_error_line(rc, err, says):
    assert rc == 2, (rc, err)
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert says in err, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "A scene, an EMRDM.save model, a training checkpoint, and bad files of every kind."
    d = tmp_path_factory.mktemp("inputs")
    with rasterio.open(d / "scene.tif", "w", driver="GTiff", height=64, width=64, count=3, dtype="uint8", crs="EPSG:32621",
                       transform=from_origin(300000, 6000000, 30, 30)) as dst:
        dst.write(np.random.default_rng(1).integers(1, 255, (3, 64, 64)).astype("uint8"))
    cfg = load_config("tiny-cuhk", RGB)
    torch.manual_seed(0)
    EMRDM(cfg).save(d / "model.pt")
    write_fake_cuhk(d / "cuhk", None, n_train=2, n_test=1, size=64)
    fit(cfg, d / "cuhk", d / "run", max_steps=1, progress=False, val_batches=0)
    whole = (d / "model.pt").read_bytes()
    (d / "truncated.ckpt").write_bytes(whole[: len(whole) // 2])
    (d / "empty.ckpt").write_bytes(b"")
    (d / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(5000))
    torch.save({"state_dict": {}, "extra": Path("x")}, d / "objects.ckpt")          # a pickled Python object
    (d / "broken.yaml").write_text("base: tiny-cuhk\nsampler: {steps: 2\n")
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]"
                                                    for i in range(1, 12)]
    (d / "bomb.yaml").write_text("\n".join(bomb + ["sampler: {steps: *l}"]))            # 9**12 values once expanded
    return d


def test_set_applies_to_a_checkpoint_without_config(files, tmp_path):
    "--set sampler.steps changes the result for both checkpoint formats, given without --config (defect 4)."
    for ckpt in (files / "model.pt", files / "run/checkpoints/last.ckpt"):
        outs = []
        for steps in (1, 3):
            out = tmp_path / f"{ckpt.stem}-{steps}.tif"
            rc, _, err = cli("remove-clouds", files / "scene.tif", "--checkpoint", ckpt, "--set", f"sampler.steps={steps}", *FAST,
                             "-o", out)
            assert rc == 0, err
            with rasterio.open(out) as src: outs.append(src.read())
        assert not np.array_equal(*outs), f"--set sampler.steps was ignored for {ckpt.name}"
    rc, _, err = cli("remove-clouds", files / "scene.tif", "--checkpoint", files / "model.pt", "--set", "sampler.stepz=2", *FAST,
                     "-o", tmp_path / "z.tif")
    one_error_line(rc, err, "unknown key 'sampler.stepz'")


BAD_CHECKPOINTS = [("random.ckpt", "is not a PyTorch checkpoint (its first bytes are"), ("empty.ckpt", "is empty (0 bytes)"),
                   ("truncated.ckpt", "is truncated or corrupt"), ("scene.tif", "is not a PyTorch checkpoint (a TIFF image)"),
                   ("objects.ckpt", "holds Python objects besides tensors (pathlib")]


@pytest.mark.parametrize("name, says", BAD_CHECKPOINTS)
@pytest.mark.parametrize("command", ["remove-clouds", "test"])
def test_bad_checkpoint_is_one_line(files, tmp_path, command, name, says):
    "Each kind of bad checkpoint gets its own diagnosis; only a real pickle of objects mentions trust_pickle (defect 11)."
    args = ([files / "scene.tif", *FAST] if command == "remove-clouds" else
            ["--data", files / "cuhk", "--dataset", "cuhk-cr1", "--quiet"])
    rc, _, err = cli(command, *args, "--checkpoint", files / name, "-o", tmp_path / "out")
    one_error_line(rc, err, says)
    assert ("trust_pickle" in err) == (name == "objects.ckpt"), err


@pytest.mark.parametrize("config, sets, says", [
    ("broken.yaml", [], "broken.yaml is not valid YAML at line 3"),
    ("bomb.yaml", [], "expands to more than 100,000 values"),
    ("tiny-cuhk", ["sampler.rho=0"], "'sampler.rho' must be > 0, got 0.0"),
    ("tiny-cuhk", ["sampler.sigma_max=.inf"], "'sampler.sigma_max' must be finite"),
    ("tiny-cuhk", ["sampler.s_noise=.nan"], "'sampler.s_noise' must be finite"),
    ("tiny-cuhk", ["network.widths=[32, 64"], "is not a valid YAML value"),
])
def test_bad_configuration_is_one_line(files, tmp_path, config, sets, says):
    "A broken YAML file, an alias bomb, and meaningless numbers are named before any work (defects 10, 11, 13)."
    config = files / config if config.endswith(".yaml") else config
    start = time.perf_counter()
    rc, _, err = cli("remove-clouds", files / "scene.tif", "--config", config, *SETS, *[a for s in sets for a in ("--set", s)],
                     *FAST, "-o", tmp_path / "out.tif")
    one_error_line(rc, err, says)
    assert time.perf_counter() - start < 30, "the configuration check hung"
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["remove-clouds", "test"])
def test_absent_device_is_one_line(files, tmp_path, command):
    "--device cuda on a machine without a GPU says so, instead of torch's assertion (defect 10)."
    args = ([files / "scene.tif", *FAST] if command == "remove-clouds" else
            ["--data", files / "cuhk", "--dataset", "cuhk-cr1", "--quiet"])
    rc, _, err = cli(command, *args, "--checkpoint", files / "model.pt", "--device", "cuda", "-o", tmp_path / "out")
    one_error_line(rc, err, "no CUDA GPU is available here")


def test_broken_pipe_is_quiet():
    "`emrdm configs | true`: the reader has gone before the first line; no traceback, the shell's 141 (defect 10)."
    out = subprocess.run(f"'{EMRDM_CMD}' configs | true; echo ${{PIPESTATUS[0]}}", shell=True, capture_output=True, text=True,
                         executable="/bin/bash")
    assert (out.stdout, out.stderr) == ("141\n", "")


def test_data_check_reports_sizes_and_duplicates(tmp_path):
    "data check flags images the networks cannot take, and two files for one CUHK-CR image name (defect 13)."
    write_fake_folder(tmp_path / "tiny", n=2, bands=3, size=1, sar=False, mask=False)
    rc, out, _ = cli("data", "check", "--dataset", "folder", tmp_path / "tiny", "--quiet")
    assert rc == 1 and out.count("size 1x1 is not a multiple of 8") == 2, out
    rc, out, _ = cli("data", "check", "--dataset", "folder", tmp_path / "tiny", "--config", "tiny-cuhk", "--quiet")
    assert rc == 1 and "not a multiple of 2" in out, out
    write_fake_cuhk(tmp_path / "cr", None, n_train=2, n_test=1, size=16)
    (tmp_path / "cr/train/cloud/train_0001.jpg").write_bytes((tmp_path / "cr/train/cloud/train_0001.png").read_bytes())
    rc, out, _ = cli("data", "check", "--dataset", "cuhk-cr1", tmp_path / "cr", "--rgb-only", "--quiet")
    assert rc == 1 and "train_0001.jpg and train_0001.png are both image 'train_0001'" in out, out


def test_file_info_memory_is_bounded(tmp_path):
    "A large valid raster is described in strips: peak memory far below one float64 copy of it (defect 11)."
    path = tmp_path / "large.tif"
    with rasterio.open(path, "w", driver="GTiff", height=6000, width=6000, count=1, dtype="uint8", tiled=True,
                       sparse_ok=True) as dst:
        dst.write(np.full((1, 256, 256), 7, np.uint8), window=rasterio.windows.Window(1000, 2000, 256, 256))
    tracemalloc.start()
    info = file_info(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (info["size"], info["min"], info["max"], info["nan"]) == ((6000, 6000), 0.0, 7.0, 0)
    whole = 6000 * 6000 * 8                                                    # one float64 copy: 288 MB
    assert peak < whole / 3, f"peak {peak / 1e6:.0f} MB"


def test_test_on_a_folder_needs_no_split_and_scores_by_its_protocol(tmp_path):
    "`emrdm test --dataset folder` reads the folder's only split (`all`) and scores with the folder's metric protocol."
    write_fake_folder(tmp_path / "F", n=2, bands=3, size=16, sar=False, mask=False)
    rc, _, err = cli("test", "--config", "tiny-cuhk", *SETS, "--data", tmp_path / "F", "--dataset", "folder", "--steps", "1",
                     "--quiet", "-o", tmp_path / "eval")
    assert rc == 0, err
    header = (tmp_path / "eval/metrics.csv").read_text().splitlines()[0]
    assert "SAM" in header, header                                       # sen12mscr protocol (the folder's), not CUHK-CR's


def test_build_l8cr_refuses_a_folder_in_use(tmp_path):
    "The benchmark is not built over a folder that holds something, unless --overwrite."
    (tmp_path / "L8").mkdir(); (tmp_path / "L8/notes.txt").write_text("mine")
    rc, _, err = cli("data", "build-l8cr", tmp_path / "L8", "--archive", tmp_path / "missing.tar.gz")
    one_error_line(rc, err, "exists: pass overwrite=True (--overwrite)")
    assert (tmp_path / "L8/notes.txt").read_text() == "mine"

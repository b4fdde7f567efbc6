"Train, test and predict end to end on fake data through the `emrdm` command and the Python API."
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from emrdm.data.sen12mscr import write_fake_sen12mscr
from emrdm.data.sen2mtc import write_fake_sen2mtc
from emrdm.model import load_config
from emrdm.checkpoint import load
from emrdm.train import fit

EMRDM = str(Path(sys.executable).parent / "emrdm")


def run(*args, cwd=None):
    return subprocess.run([EMRDM, *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("d")
    write_fake_sen2mtc(root / "mtc")
    write_fake_sen12mscr(root / "s12", {"ROIs1158_spring": [1, 106], "ROIs1868_summer": [73]})
    return root


def test_train_test_predict_temporal(data, tmp_path):
    out = run("train", "--config", "tiny-sen2mtc", "--data", data / "mtc", "--max-steps", 6, "--out", tmp_path / "run",
              "--set", "train.batch_size=2", "--val-every", 3, "--val-batches", 1)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = tmp_path / "run/checkpoints/last.ckpt"
    assert ckpt.is_file()
    out = run("test", "--checkpoint", ckpt, "--data", data / "mtc", "--out", tmp_path / "eval")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "eval/metrics.csv")))
    assert len(rows) == 2 and {"PSNR", "SSIM", "RMSE", "SAM", "LPIPS"} <= set(rows[0])
    assert (tmp_path / "eval/summary.csv").is_file() and "PSNR" in out.stdout


def test_predict_writes_georeferenced_geotiffs(data, tmp_path):
    out = run("predict", "--config", "tiny-sen12mscr", "--data", data / "s12", "--out", tmp_path / "pred", "--steps", 2)
    assert out.returncode == 0, out.stderr[-3000:]
    tifs = sorted((tmp_path / "pred").glob("*.tif"))
    assert len(tifs) == 4 and len(list((tmp_path / "pred").glob("*.png"))) == 4
    src_file = data / "s12/ROIs1158_spring_s2_cloudy/s2_cloudy_106/ROIs1158_spring_s2_cloudy_106_p1.tif"
    with rasterio.open(tifs[0]) as a, rasterio.open(src_file) as b:
        assert a.crs == b.crs and a.transform == b.transform and a.count == 13 and a.dtypes[0] == "uint16"
        assert a.read().max() <= 10000


@pytest.mark.parametrize("args, message", [
    (["--set", "sampler.stepz=3"], "unknown key 'sampler.stepz'"),
    (["--data-missing"], "missing split file"),
])
def test_bad_input_is_one_line(data, tmp_path, args, message):
    base = ["test", "--config", "tiny-sen2mtc", "--data", data / "mtc", "--out", tmp_path / "x"]
    if args == ["--data-missing"]: base[4], args = tmp_path / "nowhere", []
    out = run(*base, *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_checkpoint_that_does_not_fit(data, tmp_path):
    fit(load_config("tiny-sen2mtc", {"train.batch_size": 2}), data / "mtc", tmp_path / "r", max_steps=1, progress=False)
    out = run("test", "--config", "tiny-cuhk", "--checkpoint", tmp_path / "r/checkpoints/last.ckpt", "--data", data / "mtc")
    assert out.returncode == 2 and "does not fit" in out.stderr


class Crash(__import__("lightning").Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 3: raise RuntimeError("simulated crash")


def test_crash_leaves_a_resumable_checkpoint(data, tmp_path):
    cfg = load_config("tiny-sen2mtc", {"train.batch_size": 1})
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(cfg, data / "mtc", tmp_path / "r", max_steps=10, progress=False, callbacks=[Crash()])
    ckpt = tmp_path / "r/checkpoints/on_exception.ckpt"
    assert ckpt.is_file()
    task = fit(cfg, data / "mtc", tmp_path / "r", max_steps=5, resume=ckpt, progress=False)
    assert task.trainer.global_step == 5 and task.ema.num_updates == 5


@pytest.mark.skipif(any(__import__("importlib").util.find_spec(m) for m in ("tensorboard", "tensorboardX")),
                    reason="TensorBoard is installed here")
def test_tensorboard_without_the_extra_says_which(data, tmp_path):
    "--tensorboard without TensorBoard: one line naming the extra, before any data is read or any run folder made."
    out = run("train", "--config", "tiny-sen2mtc", "--data", data / "mtc", "--max-steps", 1, "--out", tmp_path / "run",
              "--tensorboard")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == ["error: tensorboard=True (emrdm train --tensorboard) needs TensorBoard: "
                                               "pip install 'emrdm[tensorboard]'"], out.stderr[-2000:]
    assert not (tmp_path / "run").exists()

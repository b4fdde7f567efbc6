"The `emrdm` command's conventions end to end: fast help and version, quiet training, fine-tuning from --checkpoint, --set."
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import emrdm
from emrdm.cli import _model_and_config, build_parser
from emrdm.data.sen2mtc import write_fake_sen2mtc
from emrdm.checkpoint import load

EMRDM = str(Path(sys.executable).parent / "emrdm")
CHATTER = ("litlogger", "litmodels", "Tip:", "GPU available", "TPU available", "ckpt_path", "weights_only", "LeafSpec",
           "exists and is not empty", "Restoring states", "was configured so", "`Trainer.fit` stopped")


def run(*args):
    return subprocess.run([EMRDM, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A fake Sen2_MTC_New tree and a 2-step tiny run on it, trained through the command (its output kept)."
    root = tmp_path_factory.mktemp("cli")
    write_fake_sen2mtc(root / "mtc")
    out = run("train", "--config", "tiny-sen2mtc", "--data", root / "mtc", "--max-steps", 2, "--set", "train.batch_size=2",
              "--val-every", 1, "--val-batches", 1, "-o", root / "run")
    assert out.returncode == 0, out.stderr[-3000:]
    return root, out


def test_version_and_help_without_torch():
    probe = ("import sys, contextlib, io\nfrom emrdm.cli import main\n"
             "for argv in (['--help'], ['--version'], ['train', '--help'], ['remove-clouds', '--help']):\n"
             "    try:\n        with contextlib.redirect_stdout(io.StringIO()): main(argv)\n"
             "    except SystemExit as e: assert e.code == 0, argv\n"
             "print(sorted(m for m in ('torch', 'lightning', 'rasterio', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    assert run("--version").stdout.strip() == f"emrdm {emrdm.__version__}"
    out = subprocess.run([sys.executable, "-m", "emrdm", "remove-clouds", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--value-range LO HI" in out.stdout and "examples:" in out.stdout


def test_train_is_quiet(trained):
    root, first = trained
    assert not [w for w in CHATTER if w in first.stdout + first.stderr], first.stderr[-3000:]
    again = run("train", "--resume", root / "run/checkpoints/last.ckpt", "--data", root / "mtc", "--max-steps", 3,
                "-o", root / "run", "--quiet")                          # the config comes from the checkpoint
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr == "" and again.stdout.strip() == f"checkpoints and logs in {root / 'run'}"


@pytest.mark.parametrize("config", [[], ["--config", "tiny-sen2mtc"]])
def test_train_fine_tunes_from_checkpoint(trained, tmp_path, config):
    root, _ = trained
    src = root / "run/checkpoints/last.ckpt"
    out = run("train", "--checkpoint", src, *config, "--data", root / "mtc", "--max-steps", 1, "--set", "train.lr=1e-12",
              "--set", "train.batch_size=2", "-o", tmp_path / "ft", "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    start, tuned = load(src), load(tmp_path / "ft/checkpoints/last.ckpt", ema=False)
    for (n, a), b in zip(start.net.named_parameters(), tuned.net.parameters()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=n)         # one step at lr 1e-12 from the checkpoint's weights


def test_train_without_config_says_what_it_needs(tmp_path):
    out = run("train", "--data", tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: train needs a configuration: --config NAME"), out.stderr
    assert "None" not in out.stderr and out.stderr.count("\n") == 1


def test_set_is_one_pair_per_flag():
    a = build_parser().parse_args(["remove-clouds", "--set", "a=1", "scene.tif", "--out", "x.tif"])
    assert (a.scene, a.set, a.out) == ("scene.tif", ["a=1"], "x.tif")
    for command in (["train"], ["test"], ["predict"]):
        a = build_parser().parse_args([*command, "--data", "d", "--set", "a=1", "--set", "b=[1, 2]", "-o", "o"])
        assert a.set == ["a=1", "b=[1, 2]"] and a.out == "o"
    out = run("test", "--config", "tiny-cuhk", "--data", "d", "--set", "a=1", "b=2")
    assert out.returncode == 2 and "give each KEY=VALUE its own --set" in out.stderr


def test_set_applies_to_a_checkpoints_config(trained):
    root, _ = trained
    args = build_parser().parse_args(["test", "--checkpoint", str(root / "run/checkpoints/last.ckpt"), "--data", "d",
                                      "--set", "sampler.steps=3", "--set", "sampler.s_churn=0.5"])
    model, cfg = _model_and_config(args)
    assert (cfg.sampler.steps, cfg.sampler.s_churn) == (3, 0.5) and model.config.sampler.steps == 3
    ref = load(root / "run/checkpoints/last.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(model.net.parameters(), ref.net.parameters()))

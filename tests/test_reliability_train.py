"""Training runs (issue 13: defects 1, 5, 6, 7 for checkpoints, 8): run folders, training length, exact resume after a
SIGKILL, checkpoints written beside themselves when TMPDIR is another filesystem, and SIGTERM/SIGINT. Tiny CUHK-CR
configuration on a fake tree of 7 training images, 2 a batch: 4 batches an epoch, the last one a single image."""
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from emrdm.checkpoint import read_checkpoint
from emrdm.cli import main
from emrdm.data.cuhk import write_fake_cuhk
from emrdm.model import EMRDM, load_config
import emrdm.train as train
from emrdm.train import fit

EMRDM_CMD = str(Path(sys.executable).parent / "emrdm")
STEPS = 12                                                   # three epochs of 4 batches
CFG = load_config("tiny-cuhk", {"train.batch_size": 2})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    "One torch thread here and in every process the tests start: on 2 shared cores, two spinning threads per process "
    "slowed the file down tenfold. (Runs compared with each other use the same number of threads.)"
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1); os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None: os.environ.pop("OMP_NUM_THREADS")
    else: os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuhk")
    write_fake_cuhk(root / "cr", root / "nir", n_train=7, n_test=1, size=32)
    return root


def train_args(data, out, *more):
    "The `emrdm train` arguments every run here shares (validation reduced to its loss)."
    return ["train", "--config", "tiny-cuhk", "--set", "train.batch_size=2", "--data", data / "cr", "--nir", data / "nir",
            "--val-batches", "0", "--quiet", "-o", out, *more]


def emrdm(*argv) -> tuple[int, str]:
    "`emrdm argv` in this process: (exit status, stderr). An exception that escapes `main` fails the test."
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try: rc = main([str(a) for a in argv])
        except SystemExit as e: rc = e.code
    return rc, err.getvalue()


def one_line(rc, err, status=2, prefix="error: "):
    assert rc == status, (rc, err)
    assert err.startswith(prefix) and err.strip().count("\n") == 0 and "Traceback" not in err, err


def tensors(path) -> dict:
    "Every tensor of a training checkpoint by name: weights, EMA shadow, optimiser state."
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    out = {f"weights/{k}": v for k, v in ckpt["state_dict"].items()}
    out |= {f"ema/{k}": v for k, v in ckpt["ema"]["shadow"].items()}
    for i, state in ckpt["optimizer_states"][0]["state"].items():
        out |= {f"adamw/{i}/{k}": v for k, v in state.items() if torch.is_tensor(v)}
    return out


def assert_same_run(a, b) -> dict:
    "Two training checkpoints hold the same state bit for bit; returns max |difference| of weights and EMA."
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    gap = {part: max((ta[k] - tb[k]).abs().max().item() for k in ta if k.startswith(part)) for part in ("weights", "ema")}
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}; max |dW| {gap['weights']:.3g}, max |dEMA| {gap['ema']:.3g}"
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    for key in ("global_step", "epoch", "EMRDMData"): assert ca[key] == cb[key], (key, ca[key], cb[key])
    assert ca["ema"]["num_updates"] == cb["ema"]["num_updates"]
    return gap


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    "An uninterrupted run of STEPS steps with a checkpoint after every step."
    out = tmp_path_factory.mktemp("ref") / "run"
    rc, err = emrdm(*train_args(data, out, "--max-steps", STEPS, "--checkpoint-every", 1))
    assert rc == 0, err
    return out


def visible(folder) -> list[Path]:
    "The checkpoints in `folder`, without the temp files of saves in progress (hidden names)."
    return sorted(p for p in Path(folder).glob("*.ckpt") if not p.name.startswith("."))


# ------------------------------------------------------------------------------------------------ run folders (defect 1)
def test_a_new_run_into_a_run_folder_is_refused(data, tmp_path):
    "Used to resume silently (0 steps, exit 0) or write last-v1.ckpt; now one line naming both ways out."
    rc, err = emrdm(*train_args(data, tmp_path / "R", "--max-steps", 2))
    assert rc == 0, err
    before = (tmp_path / "R/checkpoints/last.ckpt").read_bytes()
    rc, err = emrdm(*train_args(data, tmp_path / "R", "--max-steps", 4, "--set", "train.lr=5e-4"))
    one_line(rc, err)
    assert "holds a training run" in err and "--resume" in err and "--overwrite" in err, err
    assert (tmp_path / "R/checkpoints/last.ckpt").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "R/checkpoints").iterdir()) == ["last.ckpt"]


def test_overwrite_starts_afresh(data, tmp_path):
    "--overwrite: the old checkpoints and logs are gone and the new run is the one a fresh folder gets, bit for bit."
    kw = dict(nir_root=data / "nir", val_batches=0, progress=False)
    fit(CFG, data / "cr", tmp_path / "R", max_steps=5, checkpoint_every_n_steps=1, lr=5e-4, **kw)
    (tmp_path / "R/checkpoints/on_exception.ckpt").write_bytes(b"")      # what a crashed run leaves
    task = fit(CFG, data / "cr", tmp_path / "R", max_steps=3, overwrite=True, **kw)
    fit(CFG, data / "cr", tmp_path / "fresh", max_steps=3, **kw)
    assert task.trainer.global_step == 3
    assert sorted(p.name for p in (tmp_path / "R/checkpoints").iterdir()) == ["last.ckpt"]
    assert [p.name for p in (tmp_path / "R/logs").iterdir()] == ["version_0"]
    assert_same_run(tmp_path / "R/checkpoints/last.ckpt", tmp_path / "fresh/checkpoints/last.ckpt")


def test_resume_keeps_the_stored_config(data, reference, tmp_path):
    "A --set, --seed or --config that disagrees with the checkpoint is an error naming the key; agreeing ones are fine."
    shutil.copytree(reference, tmp_path / "R")
    last = tmp_path / "R/checkpoints/last.ckpt"
    for extra, key in ((["--set", "train.lr=5e-4"], "train.lr=0.001, not 0.0005"), (["--seed", 5], "train.seed=3407, not 5"),
                       (["--config", "tiny-sen2mtc"], "more keys)")):
        args = train_args(data, tmp_path / "R", "--resume", last, "--max-steps", STEPS + 1)
        if extra[0] == "--config": args[1:3] = extra; extra = []
        rc, err = emrdm(*args, *extra)
        one_line(rc, err)
        assert key in err and "keeps the configuration stored in its checkpoint" in err, err
    rc, err = emrdm(*train_args(data, tmp_path / "R", "--resume", "--max-steps", STEPS + 1, "--set", "train.lr=1e-3"))
    assert rc == 0, err
    assert torch.load(tmp_path / "R/checkpoints/last.ckpt", weights_only=True)["global_step"] == STEPS + 1


@pytest.fixture(scope="module")
def bad_files(data, reference, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    whole = (reference / "checkpoints/last.ckpt").read_bytes()
    (d / "truncated.ckpt").write_bytes(whole[: len(whole) // 2])
    (d / "empty.ckpt").write_bytes(b"")
    (d / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(5000))
    EMRDM(CFG).save(d / "model.pt")                                       # weights without training state
    other = load_config("tiny-cuhk", {"train.batch_size": 2, "network.widths": [16, 32]})
    fit(other, data / "cr", d / "other", nir_root=data / "nir", max_steps=1, val_batches=0, progress=False)
    return d


BAD_FILES = [("random.ckpt", "is not a PyTorch checkpoint"), ("empty.ckpt", "is empty"),
             ("truncated.ckpt", "is truncated or corrupt"), ("model.pt", "is not a checkpoint of emrdm training"),
             ("missing.ckpt", "does not exist")]
OTHER = ("other/checkpoints/last.ckpt", "was trained with network.widths=[16, 32], not [32, 64]")


@pytest.mark.parametrize("name, says, with_config", [(*bad, c) for bad in BAD_FILES for c in (True, False)] + [(*OTHER, True)])
def test_bad_resume_file_is_one_line(data, bad_files, tmp_path, name, says, with_config):
    "Every bad --resume file, with --config or without: exit 2, one line naming it, no traceback, no run folder made."
    args = train_args(data, tmp_path / "new", "--resume", bad_files / name, "--max-steps", 2)
    if not with_config: args[1:3] = []
    rc, err = emrdm(*args)
    one_line(rc, err)
    assert says in err and str(bad_files / name) in err, err
    assert not (tmp_path / "new").exists()


def test_a_corrupt_last_checkpoint_is_one_line(data, reference, tmp_path):
    "A half-written last.ckpt (as a kill during a non-atomic copy left it) used to give every later run a bare EOFError."
    shutil.copytree(reference, tmp_path / "R")
    last = tmp_path / "R/checkpoints/last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    one_line(*emrdm(*train_args(data, tmp_path / "R", "--max-steps", 2)))            # a new run: refused by the folder rule
    rc, err = emrdm(*train_args(data, tmp_path / "R", "--resume", "--max-steps", STEPS + 1))
    one_line(rc, err)
    assert str(last) in err and "truncated or corrupt" in err, err
    rc, err = emrdm(*train_args(data, tmp_path / "R", "--overwrite", "--max-steps", 2))
    assert rc == 0, err


# ------------------------------------------------------------------------------------------- training length (defect 5)
def test_max_epochs_from_the_config(data, tmp_path):
    "tiny-cuhk says train.max_epochs: 2 (8 steps here); Lightning's 1000 epochs applied. max_time bounds the old behaviour."
    task = fit(CFG, data / "cr", tmp_path / "a", nir_root=data / "nir", val_batches=0, progress=False, max_time="00:00:00:40")
    assert (task.trainer.global_step, task.current_epoch) == (8, 2)
    task = fit(CFG, data / "cr", tmp_path / "b", nir_root=data / "nir", val_batches=0, progress=False, max_epochs=1)
    assert task.trainer.global_step == 4                                 # an explicit max_epochs wins
    task = fit(CFG, data / "cr", tmp_path / "c", nir_root=data / "nir", val_batches=0, progress=False, max_steps=10)
    assert task.trainer.global_step == 10                                # a step limit alone lifts the config's epochs
    with pytest.raises(ValueError, match="max_steps must be a whole number of at least 1"):
        fit(CFG, data / "cr", tmp_path / "d", nir_root=data / "nir", max_steps=0)


@pytest.mark.parametrize("bad", [["--max-steps", "0"], ["--max-steps", "-1"], ["--max-epochs", "0"]])
def test_step_counts_below_one_are_refused(data, tmp_path, bad):
    "--max-steps 0 meant no limit; now the parser refuses it (exit 2) before anything is imported or written."
    out = subprocess.run([EMRDM_CMD, *map(str, train_args(data, tmp_path / "R", *bad))], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "must be at least 1" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "R").exists()


# --------------------------------------------------------------------------------------------- exact resume (defect 6)
def test_resume_from_any_step_is_exact(data, tmp_path):
    "From steps in every position (mid-epoch, an epoch's end, before a mid-epoch validation; random crops; once with a "
    "DataLoader worker) a resumed run ends bit for bit where the uninterrupted one does."
    kw = dict(nir_root=data / "nir", val_batches=1, val_every_n_steps=3, progress=False, crop=16)
    fit(CFG, data / "cr", tmp_path / "ref", max_steps=10, checkpoint_every_n_steps=1, **kw)
    for k in (1, 3, 4, 5, 7, 8):                    # 3: validation follows; 4, 8: epoch ends (8: the short batch); 5: a start
        run = tmp_path / f"from{k}"
        (run / "checkpoints").mkdir(parents=True)
        shutil.copy(tmp_path / f"ref/checkpoints/step{k:08d}.ckpt", run / "checkpoints/last.ckpt")
        fit(CFG, data / "cr", run, max_steps=10, resume=run / "checkpoints/last.ckpt", num_workers=1 if k == 5 else 0, **kw)
        assert_same_run(tmp_path / "ref/checkpoints/last.ckpt", run / "checkpoints/last.ckpt")


# A training process that records what it writes and renames, and sends itself a signal at a chosen moment: when a file
# in its run's checkpoint folder is opened for writing for the n-th time ("write:n"), or when a rename puts a file there
# under a given name ("rename:NAME"). The kill is the kernel's, at a point the test chooses, instead of a race.
PROBE = """
import json, os, sys
run, log, signum, when = sys.argv[1], open(sys.argv[2], "w"), int(sys.argv[3]), sys.argv[4]
folder, writes = os.path.join(run, "checkpoints"), 0
def note(*event): log.write(json.dumps(event) + "\\n"); log.flush()
def audit(event, args):
    global writes
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = os.path.abspath(os.fsdecode(args[0])), args[1], args[2]
        if path != log.name and ((mode is not None and any(c in mode for c in "wax+")) or
                                 (mode is None and flags & (os.O_WRONLY | os.O_RDWR))):
            note("write", path)
            writes += path.startswith(folder)
            if path.startswith(folder) and when == f"write:{writes}": os.kill(os.getpid(), signum)
    elif event == "os.rename":
        src, dst = os.fsdecode(args[0]), os.fsdecode(args[1])
        note("rename", src, dst)
        if when == "rename:" + os.path.basename(dst): os.kill(os.getpid(), signum)
sys.addaudithook(audit)
from emrdm.cli import main
sys.exit(main(sys.argv[5:]))
"""


def probe(run, log, sig, when, *argv, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, str(run), str(log), str(int(sig)), when, *map(str, argv)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_resume_after_sigkill_is_exact(data, reference, tmp_path):
    "SIGKILL a training process in the middle of an epoch (right after step 5); `--resume` ends bit for bit on the "
    "uninterrupted run."
    run = tmp_path / "R"
    proc = probe(run, tmp_path / "log", signal.SIGKILL, "rename:step00000005.ckpt",
                 *train_args(data, run, "--max-steps", 1000, "--checkpoint-every", 1))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    for ckpt in visible(run / "checkpoints"): read_checkpoint(ckpt)                    # every checkpoint left is whole
    killed = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert 3 < killed["global_step"] < STEPS, killed["global_step"]
    rc, err = emrdm(*train_args(data, run, "--resume", run / "checkpoints/last.ckpt", "--max-steps", STEPS))
    assert rc == 0, err
    gap = assert_same_run(reference / "checkpoints/last.ckpt", run / "checkpoints/last.ckpt")
    assert killed["global_step"] == 5, "last.ckpt was older than step00000005.ckpt"   # always the newest state...
    assert killed["EMRDMData"] == {"epoch": 1, "batches": 1}                         # ...one batch into epoch 1
    assert sorted(p.name for p in (run / "checkpoints").glob("last*")) == ["last.ckpt"]
    print(f"killed after step 5; resumed to {STEPS}: max |dW| {gap['weights']}, max |dEMA| {gap['ema']}")


# ---------------------------------------------------------------------------------------- atomic checkpoints (defect 7)
def test_checkpoints_are_written_beside_themselves(data, tmp_path):
    "TMPDIR on a tmpfs, the run on disk, a SIGKILL inside a checkpoint's save: nothing was written to TMPDIR, each "
    "checkpoint appeared by a rename from a temp file in its own folder, and every checkpoint left is whole."
    if not Path("/dev/shm").is_dir(): pytest.skip("needs /dev/shm (a tmpfs)")
    run, log = tmp_path / "R", tmp_path / "audit.jsonl"
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmpdir:
        proc = probe(run, log, signal.SIGKILL, "write:6", *train_args(data, run, "--max-steps", 1000, "--checkpoint-every", 1),
                     env={**os.environ, "TMPDIR": tmpdir})
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        assert os.listdir(tmpdir) == []
    events = [json.loads(line) for line in log.read_text().splitlines()]
    writes = [e[1] for e in events if e[0] == "write"]
    first = next(i for i, w in enumerate(writes) if w.startswith(str(run)))           # (tempfile probes TMPDIR at import)
    assert not [w for w in writes[first:] if w.startswith(tmpdir)], "written to TMPDIR during the run"
    assert not [w for w in writes if w.endswith(".ckpt") and not Path(w).name.startswith(".")], "a checkpoint written in place"
    renames = [(Path(a), Path(b)) for kind, *ab in events if kind == "rename" for a, b in [ab]]
    assert renames and all(a.parent == b.parent and a.name.startswith(".") for a, b in renames if b.suffix == ".ckpt")
    ckpts = visible(run / "checkpoints")
    assert ckpts and all(p.stat().st_size > 0 for p in ckpts)
    for ckpt in ckpts: read_checkpoint(ckpt)
    assert list((run / "checkpoints").glob(".*.part*")), "the kill should have left the save's temp file"
    rc, err = emrdm(*train_args(data, run, "--resume", "--max-steps", 8))              # resuming clears it
    assert rc == 0, err
    assert not list((run / "checkpoints").glob(".*.part*"))


# ------------------------------------------------------------------------------------------------------ signals (defect 8)
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_last_and_exits_non_zero(data, reference, tmp_path, sig, status):
    "SIGTERM exited 0 and Ctrl+C 1; now the step in progress ends, last.ckpt holds it, the exit status is 143 or 130 with "
    "one line saying so, and --resume continues exactly. The signal comes right after step 2 has been saved."
    run = tmp_path / "R"
    proc = probe(run, tmp_path / "log", sig, "rename:step00000002.ckpt",
                 *train_args(data, run, "--max-steps", 1000, "--checkpoint-every", 1))
    one_line(proc.returncode, proc.stderr, status, prefix=f"stopped: training stopped by {sig.name} after step 3; ")
    assert str(run / "checkpoints/last.ckpt") in proc.stderr, proc.stderr
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 3
    assert not (run / "checkpoints/on_exception.ckpt").exists()
    rc, err = emrdm(*train_args(data, run, "--resume", "--max-steps", STEPS))
    assert rc == 0, err
    assert_same_run(reference / "checkpoints/last.ckpt", run / "checkpoints/last.ckpt")


class SignalAt(L.Callback):
    "Send this process `sig` after step `step`."
    def __init__(self, sig, step): self.sig, self.step = sig, step
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step: os.kill(os.getpid(), self.sig)


def test_fit_raises_training_interrupted_and_puts_the_handlers_back(data, tmp_path):
    "In Python, fit raises TrainingInterrupted (step, checkpoint) and leaves the process's signal handlers as it found them."
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(train.TrainingInterrupted) as stop:
        fit(CFG, data / "cr", tmp_path / "R", nir_root=data / "nir", max_steps=50, val_batches=0, progress=False,
            callbacks=[SignalAt(signal.SIGTERM, 2)])
    assert (stop.value.signum, stop.value.step, stop.value.checkpoint) == (signal.SIGTERM, 3, tmp_path / "R/checkpoints/last.ckpt")
    assert torch.load(stop.value.checkpoint, weights_only=True)["global_step"] == 3      # the next step, then the stop
    assert {s: signal.getsignal(s) for s in before} == before

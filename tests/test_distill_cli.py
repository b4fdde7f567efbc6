"`emrdm distill` end to end on a fake Sen2_MTC_New tree (a temporal teacher): the student's checkpoint, its grid, resume, refusals."
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emrdm.checkpoint import load, read_checkpoint
from emrdm.data.sen2mtc import write_fake_sen2mtc
from emrdm.model import EMRDM, load_config

EMRDM_BIN = str(Path(sys.executable).parent / "emrdm")


def run(*args):
    return subprocess.run([EMRDM_BIN, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    write_fake_sen2mtc(root / "mtc")
    torch.manual_seed(0)
    EMRDM(load_config("tiny-sen2mtc")).save(root / "teacher.pt")
    common = ("--teacher", root / "teacher.pt", "--data", root / "mtc", "--set", "train.batch_size=2", "--quiet")
    out = run("distill", *common, "--max-steps", 2, "--val-batches", 0, "-o", root / "student")
    assert out.returncode == 0, out.stderr[-3000:]
    return root, common, out


def test_student_checkpoint_samples_in_one_step(setup):
    root, _, out = setup
    ckpt = root / "student/checkpoints/last.ckpt"
    assert out.stdout.strip() == f"the student (1 step): {ckpt}" and out.stderr == ""
    student = load(ckpt)
    assert student.config.sampler.steps == 1 and student.sigmas().tolist() == [100.0, 0.0]
    stored = read_checkpoint(ckpt)
    assert stored["distilled_from"]["teacher"] == "tiny-sen2mtc" and stored["global_step"] == 2
    assert not [k for k in stored["state_dict"] if "teacher" in k]
    res = run("test", "--checkpoint", ckpt, "--data", root / "mtc", "--batch-size", 2, "-o", root / "scored", "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (root / "scored/summary.csv").is_file()


def test_resume_and_run_folder_rules(setup):
    root, common, _ = setup
    again = run("distill", *common, "--max-steps", 3, "-o", root / "student")
    assert again.returncode == 2 and "holds a training run" in again.stderr, again.stderr
    more = run("distill", *common, "--resume", "--max-steps", 3, "--val-batches", 0, "-o", root / "student")
    assert more.returncode == 0, more.stderr[-3000:]
    assert read_checkpoint(root / "student/checkpoints/last.ckpt")["global_step"] == 3
    into_teacher = run("distill", *common, "--overwrite", "--max-steps", 1, "-o", root)
    assert into_teacher.returncode == 2 and "would overwrite the input" in into_teacher.stderr, into_teacher.stderr
    assert (root / "teacher.pt").is_file()


@pytest.mark.parametrize("args, message", [
    (("--student-steps", 5), "a student needs fewer steps than its teacher (5), got 5"),
    (("--max-time", "5 minutes"), "expects DD:HH:MM:SS"),
    (("--gt-weight", -1), "gt_weight must be >= 0"),
])
def test_bad_requests_are_one_line(setup, tmp_path, args, message):
    root, common, _ = setup
    out = run("distill", *common, *args, "--max-steps", 1, "-o", tmp_path / "s")
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "s/checkpoints").exists()


def test_papermill_train_notebook_distils_a_teacher(setup, tmp_path):
    "nbs/experiments/train.ipynb with teacher= (what make paper-distill runs): a student, scored on the test split."
    import json
    root, _, _ = setup
    nb = Path(__file__).resolve().parents[1] / "nbs" / "experiments" / "train.ipynb"
    res = subprocess.run([str(Path(sys.executable).parent / "papermill"), "--kernel", "python3", str(nb), str(tmp_path / "out.ipynb"),
                          "-p", "config", "tiny-sen2mtc", "-p", "teacher", str(root / "teacher.pt"), "-p", "data", str(root / "mtc"),
                          "-p", "run_dir", str(tmp_path / "run"), "-p", "max_steps", "2", "-p", "max_eval_images", "2",
                          "-y", "overrides: {train.batch_size: 2}"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "run/metrics.json").read_text())
    assert summary["teacher"] == str(root / "teacher.pt") and summary["steps"] == 2
    assert summary["protocol"]["sampler"]["steps"] == 1 and (tmp_path / "run/eval/summary.csv").is_file()
    assert load(tmp_path / "run/checkpoints/last.ckpt").config.sampler.steps == 1

"Evaluation and prediction under torch.distributed (2 CPU processes, gloo): every image exactly once."
import csv
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from emrdm.data.sen2mtc import Sen2MTC, write_fake_sen2mtc
from emrdm.model import EMRDM
from emrdm.evaluate import evaluate, predict


def _worker(rank, world, init, root, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)
    model = EMRDM.from_config("tiny-sen2mtc").eval()                      # same weights on both ranks
    ds = Sen2MTC(root, "train", augment=False)
    evaluate(model, ds, Path(out) / "eval", progress=False, steps=2, device="cpu")
    predict(model, ds, Path(out) / "pred", progress=False, steps=2, device="cpu")
    dist.destroy_process_group()


def test_two_ranks_equal_one_process(tmp_path):
    write_fake_sen2mtc(tmp_path / "mtc", {"train": {"T1": 3, "T2": 2}, "val": {"T3": 1}, "test": {"T4": 1}})
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'store'}", tmp_path / "mtc", tmp_path / "ddp"), nprocs=2, join=True)
    torch.manual_seed(0)
    model = EMRDM.from_config("tiny-sen2mtc").eval()
    single = evaluate(model, Sen2MTC(tmp_path / "mtc", "train", augment=False), tmp_path / "one", progress=False, steps=2)
    rows = list(csv.DictReader(open(tmp_path / "ddp/eval/metrics.csv")))
    assert [r["path"] for r in rows] == [r["path"] for r in single.rows]                 # 5 images, once each, in order
    for a, b in zip(rows, single.rows):
        assert abs(float(a["RMSE"]) - b["RMSE"]) < 1e-6                                  # per-image noise: same samples
    assert len(list((tmp_path / "ddp/pred").glob("*.tif"))) == 5
    assert len(list(csv.DictReader(open(tmp_path / "ddp/pred/metrics.csv")))) == 5

#!/usr/bin/env python3
"""Loader throughput (samples/s) of each dataset on fake data at the real file sizes, with 0 and 2 workers.

    python benchmarks/data.py [--samples 48] [--workers 0 2]

CUHK-CR: 512x512 RGB + NIR PNGs (halved to 256); SEN12MS-CR: 256x256 S1 (2 x float32) + 2 x S2 (13 x uint16);
Sen2_MTC_New: 256x256, 4 dates x 4 x uint16. The files are written to a temporary folder (page-cached afterwards,
so this measures decoding and preprocessing, not disk).
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch

from emrdm.data.check import open_dataset
from emrdm.data.cuhk import write_fake_cuhk
from emrdm.data.sen12mscr import write_fake_sen12mscr
from emrdm.data.sen2mtc import write_fake_sen2mtc


def throughput(ds, workers: int, batch: int = 1) -> float:
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=False)
    t0, n = time.perf_counter(), 0
    for b in dl: n += b["mu"].shape[0]
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()
    n = args.samples
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_fake_cuhk(tmp / "cr", tmp / "nir", n_train=n, n_test=1, size=512)
        write_fake_sen12mscr(tmp / "s12", {"ROIs1158_spring": [1, 15]}, patches=n // 2, size=256)
        write_fake_sen2mtc(tmp / "mtc", {"train": {"T10SEG": n}, "val": {"T1": 1}, "test": {"T2": 1}}, size=256)
        sets = {"cuhk-cr1 (512 -> 256, RGB+NIR)": open_dataset("cuhk-cr1", tmp / "cr", "train", nir_root=tmp / "nir"),
                "sen12mscr (256, S1 + 2 x S2)": open_dataset("sen12mscr", tmp / "s12", "train"),
                "sen2mtc (256, 3 dates + clear, augmented)": open_dataset("sen2mtc", tmp / "mtc", "train")}
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {n} samples per dataset\n")
        print("| dataset | " + " | ".join(f"{w} workers, samples/s" for w in args.workers) + " |")
        print("|---|" + "---:|" * len(args.workers))
        for name, ds in sets.items():
            throughput(ds, 0)                                               # warm the page cache
            print(f"| {name} | " + " | ".join(f"{throughput(ds, w):.1f}" for w in args.workers) + " |", flush=True)


if __name__ == "__main__":
    main()

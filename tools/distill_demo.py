#!/usr/bin/env python3
"""`make demo-distill`: one-step students of `make demo`'s two models, measured against their teachers.

For the mono-temporal model (tiny-l8cr) and the multi-temporal one (tiny-l8cr-mt) that `make demo` trained:
1. distil each teacher (4 Euler steps) into a 1-step student with `emrdm.distill.distill`, for at most the CPU time
   the teacher was trained for (`--minutes`), on the same random crops and clouds;
2. score teacher and student on the held-out tiles of both cloud families from the same initial noise (one sample
   each: PSNR, SSIM, and the student's PSNR against the teacher's sample);
3. time `remove_clouds` on a 1024x1024 scene (one megapixel) with the teacher and with the student;
4. optionally (`--two-step`) a 2-step student of the mono model, scored the same way;
5. write OUT/results.md and a figure of held-out tiles (cloudy, teacher, student, truth).
"""
import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from demo import FAMILIES, METRICS, budget_bar, save_figure, show, write_rgb, write_text


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="demo", help="the folder `make demo` wrote (its checkpoints and data)")
    ap.add_argument("--out", default=None, help="where the students, results and figure go (default: DEMO/distill)")
    ap.add_argument("--minutes", type=float, nargs=2, default=(6.0, 6.4), metavar=("MONO", "MULTI"),
                    help="distillation budget of each student in minutes (default: the teachers' training times in the "
                    "README's make demo run, 6.0 and 6.4)")
    ap.add_argument("--gt-weight", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=None, help="the student's learning rate (default: the teacher config's)")
    ap.add_argument("--two-step", action="store_true", help="also distil and score a 2-step student of the mono model")
    ap.add_argument("--only", choices=("mono", "multi"), default=None, help="one of the two models only")
    ap.add_argument("--scene", type=int, default=1024, help="side of the scene timed through remove_clouds")
    ap.add_argument("--reuse", action="store_true", help="score students already in OUT instead of distilling them again")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def distil(args, teacher_ckpt: Path, root: Path, dataset: str, run: Path, steps: int, minutes: float):
    "A `steps`-step student of `teacher_ckpt` in `run`, trained for `minutes`: (student, optimiser steps, minutes taken)."
    from emrdm.distill import distill
    if args.reuse and (run / "checkpoints/last.ckpt").is_file():
        from emrdm.checkpoint import load, read_checkpoint
        n = read_checkpoint(run / "checkpoints/last.ckpt")["global_step"]
        print(f"    {run / 'checkpoints/last.ckpt'}: distilled earlier ({n} steps), reused")
        return load(run / "checkpoints/last.ckpt").eval(), n, float("nan")
    m, s = int(minutes), int(round((minutes - int(minutes)) * 60))
    t0 = time.time()
    task = distill(teacher_ckpt, root, run, student_steps=steps, gt_weight=args.gt_weight, dataset=dataset, crop=128,
                   max_time=f"00:{m // 60:02d}:{m % 60:02d}:{s:02d}", overrides={"train.lr": args.lr} if args.lr else None,
                   val_every_n_steps=10**9, val_batches=0, seed=args.seed, progress=False, overwrite=True,
                   callbacks=[budget_bar(int(minutes * 60), "s", f"    distilling {steps}-step")])
    took = (time.time() - t0) / 60
    print(f"    {task.trainer.global_step} steps in {took:.1f} minutes -> {run / 'checkpoints/last.ckpt'}")
    return task.ema_model().eval(), task.trainer.global_step, took


def one_sample(model, s, seed: int) -> torch.Tensor:
    with torch.no_grad():
        return model.sample(s["mu"][None], s["cond"][None], generator=[torch.Generator().manual_seed(seed)])[0]


def score(models: dict, dataset_cls, root: Path, seed: int):
    "Every held-out tile of both families through each model, one sample from the same seed: (rows, examples)."
    from emrdm.metrics import image_metrics
    rows, examples = [], []
    for split in FAMILIES:
        test = dataset_cls(root, split=split)
        for i in range(len(test)):
            s = test[i]
            preds = {name: one_sample(m, s, seed + 100 * i) for name, m in models.items()}
            teacher = preds["teacher (4 steps)"]
            for name, p in preds.items():
                m = image_metrics(s["target"], p, "cuhk")
                gap = image_metrics(teacher, p, "cuhk")["PSNR"] if p is not teacher else float("nan")
                rows.append({"family": split, "tile": s["path"], "method": name, **{k: m[k] for k in METRICS}, "vs teacher": gap})
            if i in (1, 6): examples.append((split, s, preds))
    return rows, examples


def table(rows, methods) -> str:
    md = []
    for split, title in FAMILIES.items():
        md += [f"**{title}**", "", "| model | NFE | PSNR (dB) | SSIM | RMSE | PSNR vs the teacher's sample |", "|---|---:|---:|---:|---:|---:|"]
        for name, nfe in methods:
            sel = [r for r in rows if r["family"] == split and r["method"] == name]
            v = [np.mean([r[k] for r in sel]) for k in (*METRICS, "vs teacher")]
            md.append(f"| {name} | {nfe} | {v[0]:.2f} | {v[1]:.4f} | {v[2]:.4f} | {'' if np.isnan(v[3]) else f'{v[3]:.2f}'} |")
        md.append("")
    return "\n".join(md)


def scene_files(demo: Path, out: Path, size: int, dates: int, seed: int) -> list:
    "A `size` x `size` window of the demo's Landsat-8 scene under out-of-family clouds, as `dates` GeoTIFFs."
    import json
    import rasterio
    from rasterio.windows import Window
    from emrdm.data.evalclouds import eval_clouds
    from emrdm.data.l8crmt import simulate_dates
    from emrdm.data.samples import fetch_landsat_scene, scene_image
    scene = fetch_landsat_scene(None)
    img = scene_image(scene)[0]
    r0, c0 = (img.shape[1] - size) // 2, (img.shape[2] - size) // 2
    img = img[:, r0:r0 + size, c0:c0 + size]
    with rasterio.open(scene["B4"]) as src:
        prof = dict(driver="GTiff", height=size, width=size, count=3, dtype="uint8", crs=src.crs,
                    transform=src.window_transform(Window(c0, r0, size, size)))
    cloudy = [eval_clouds(img, coverage=0.35, seed=[seed, 97])["cloudy"]] if dates == 1 else \
             [d["cloudy"] for d in simulate_dates(img, seed=[seed, 96], family="eval", ood_coverage=(0.3, 0.5))]
    files = [out / f"scene{size}_date{t}.tif" for t in range(dates)]
    for f, a in zip(files, cloudy): write_rgb(f, a, prof)
    return files


def time_scene(models: dict, files: list, out: Path) -> dict:
    "Seconds of `remove_clouds` on the scene for each model (the faster of two runs)."
    from emrdm.inference import remove_clouds
    secs = {}
    for name, m in models.items():
        runs = []
        for _ in range(2):
            t0 = time.perf_counter()
            remove_clouds(m, files if len(files) > 1 else files[0], out / "scene_out.tif", tile=256, overlap=64, progress=False, overwrite=True)
            runs.append(time.perf_counter() - t0)
        secs[name] = min(runs)
    return secs


def draw(examples, path: Path, names: list):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(len(examples), len(names) + 2, figsize=(2.5 * (len(names) + 2), 2.6 * len(examples)), dpi=80, squeeze=False)
    for r, (split, s, preds) in enumerate(examples):
        mu = s["mu"][0] if s["mu"].ndim == 4 else s["mu"]
        show(ax[r, 0], mu, f"cloudy{' date 0' if s['mu'].ndim == 4 else ''} ({'out-of-family' if split == 'test-ood' else 'in-family'})")
        for c, n in enumerate(names, 1): show(ax[r, c], preds[n], n)
        show(ax[r, -1], s["target"], "clear (truth)")
    fig.tight_layout()
    save_figure(fig, path)


def run_model(args, kind: str, demo: Path, out: Path, minutes: float) -> str:
    from emrdm.checkpoint import load
    from emrdm.data.cuhk import L8CR
    from emrdm.data.l8crmt import L8CRMT
    cfg = dict(mono=("L8-CR", "l8cr", L8CR, 1), multi=("L8-CR-MT", "l8cr-mt", L8CRMT, 3))[kind]
    teacher_ckpt, root = demo / kind / "checkpoints/last.ckpt", demo / "data" / cfg[0]
    if not teacher_ckpt.is_file(): raise SystemExit(f"error: {teacher_ckpt} is missing: run make demo first")
    print(f"\n[{kind}] teacher {teacher_ckpt}")
    teacher = load(teacher_ckpt).eval()
    models, info = {"teacher (4 steps)": teacher}, []
    for steps in ((1, 2) if args.two_step and kind == "mono" else (1,)):
        student, n, took = distil(args, teacher_ckpt, root, cfg[1], out / f"{kind}-student{steps}", steps, minutes)
        models[f"student ({steps} step{'s' if steps > 1 else ''})"] = student
        info.append(f"{steps}-step student: {n} optimiser steps in {took:.1f} minutes")
    rows, examples = score(models, cfg[2], root, args.seed)
    methods = [(n, m.config.sampler.steps) for n, m in models.items()]
    md = table(rows, methods)
    files = scene_files(demo, out, args.scene, cfg[3], args.seed)
    secs = time_scene({k: v for k, v in models.items() if "2 steps" not in k}, files, out)
    t, s = secs["teacher (4 steps)"], secs["student (1 step)"]
    md += (f"\nremove_clouds on a {args.scene}x{args.scene} scene ({cfg[3]} date{'s' if cfg[3] > 1 else ''}): teacher {t:.1f} s, "
           f"1-step student {s:.1f} s: **{t / s:.2f}x faster**.\n\n" + "; ".join(info) + f" (budget {minutes:g} minutes each).\n")
    draw(examples, out / f"{kind}.png", [n for n, _ in methods])
    print(md)
    return f"## {kind}: {teacher.config.name}\n\n{md}"


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*LPIPS is reported.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    demo = Path(args.demo); out = Path(args.out or demo / "distill"); out.mkdir(parents=True, exist_ok=True)
    parts = [run_model(args, k, demo, out, mins) for k, mins in zip(("mono", "multi"), args.minutes) if args.only in (None, k)]
    text = (f"# make demo-distill\n\n{torch.get_num_threads()} CPU threads, gt_weight {args.gt_weight}, seed {args.seed}; "
            "CUHK-CR protocol, one sample per tile from the same initial noise for teacher and student.\n\n" + "\n".join(parts))
    write_text(out / "results.md", text)
    print(f"\n{out / 'results.md'}")


if __name__ == "__main__":
    main()

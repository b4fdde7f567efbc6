#!/usr/bin/env python3
"""`make demo-uncertainty`: calibrated uncertainty maps of `make demo`'s models, measured on the held-out tiles.

For the mono-temporal model (tiny-l8cr) and the multi-temporal one (tiny-l8cr-mt) that `make demo` trained, and for
1-step students where `make demo-distill` (or, for the mono model, `make demo`) left them:
1. K posterior samples of every held-out tile of both cloud families (emrdm.uncertainty.spread_and_error);
2. the rank correlation (Spearman) of the spread with the absolute error of the mean, per pixel;
3. calibration fitted on one family and scored on the other (both ways): UCE of the raw spread, of the scale map
   and of the isotonic map, and a reliability diagram;
4. the mean of K samples against one sample (PSNR, SSIM), the uncertainty under thick clouds against clear pixels,
   and the cost (K x NFE, seconds per tile);
5. OUT/results.md and figures: uncertainty beside the cloud mask and the error, the reliability diagram, the two
   distributions.
"""
import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from demo import FAMILIES, save_figure, show, write_text

FIT_ON = {"test": "test-ood", "test-ood": "test"}          # calibration fitted on one family, scored on the other


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="demo", help="the folder `make demo` wrote")
    ap.add_argument("--out", default=None, help="results and figures (default: DEMO/uncertainty)")
    ap.add_argument("--samples", type=int, default=8, help="K")
    ap.add_argument("--only", choices=("mono", "multi"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def masks(root: Path, split: str, dataset, kind: str) -> list:
    "Per tile `[H, W]`: 2 thick cloud (every date), 0 clear (some date clear of cloud and shadow), 1 the rest."
    from PIL import Image
    names = ["mask"] if kind == "mono" else [f"mask{t}" for t in range(3)]
    out = []
    for i in range(len(dataset)):
        path = dataset[i]["path"]
        m = np.stack([np.asarray(Image.open(root / split / n / path)) for n in names])
        cls = np.ones(m.shape[1:], np.int8)
        cls[(m == 255).all(0)] = 2
        cls[(m == 0).any(0)] = 0
        out.append(cls)
    return out


def tile_scores(r, dataset) -> dict:
    from emrdm.metrics import image_metrics
    one, mean = [], []
    for i in range(len(r.spread)):
        t = dataset[i]["target"]
        one.append(image_metrics(t, t + r.error_one[i], "cuhk")); mean.append(image_metrics(t, r.mean[i], "cuhk"))
    return {k: (np.mean([m[k] for m in one]), np.mean([m[k] for m in mean])) for k in ("PSNR", "SSIM")}


def run_model(args, label: str, model, root: Path, dataset_cls, kind: str, out: Path):
    from emrdm.uncertainty import expected_error, fit_maps, spearman, spread_and_error, uce
    K, res, figs = args.samples, {}, {}
    for split in FAMILIES:
        ds = dataset_cls(root, split=split)
        t0 = time.time()
        r = spread_and_error(model, ds, K, args.seed, progress=True)
        res[split] = dict(r=r, ds=ds, secs=(time.time() - t0) / len(ds), masks=masks(root, split, ds, kind))
    lines = [f"### {label}", "", f"K = {K} samples of {model.config.sampler.steps} step(s): {K * model.config.sampler.steps} "
             f"network evaluations per tile; {res['test']['secs']:.2f} s per 256x256 tile on this CPU.", "",
             "| held-out family | Spearman raw spread / calibrated | window (fitted on the other family) | UCE raw spread | UCE scale | "
             "UCE isotonic | scale fitted on the other family | PSNR one sample / mean of K | SSIM one sample / mean of K | "
             "median uncertainty clear / thick cloud |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    flat = lambda maps: torch.cat([t.flatten() for t in maps])
    cals = {split: {m: fit_maps(v["r"].spread, v["r"].error, m, K) for m in ("scale", "isotonic")} for split, v in res.items()}
    for split, v in res.items():
        spread, err = flat(v["r"].spread), flat(v["r"].error)
        cal_s, cal_i = cals[FIT_ON[split]]["scale"], cals[FIT_ON[split]]["isotonic"]
        u_s, u_i = (flat([expected_error(t, c) for t in v["r"].spread]) for c in (cal_s, cal_i))
        cls = np.concatenate([np.broadcast_to(m, t.shape).ravel() for m, t in zip(v["masks"], v["r"].spread)])
        med_clear, med_cloud = (float(np.median(u_i.numpy()[cls == c])) * 127.5 for c in (0, 2))
        sc = tile_scores(v["r"], v["ds"])
        lines.append(f"| {FAMILIES[split].split(' (')[0]} | {spearman(spread, err.abs()):.3f} / {spearman(u_s, err.abs()):.3f} | "
                     f"{cal_s.smooth}x{cal_s.smooth} | {uce(spread, err):.4f} | {uce(u_s, err):.4f} | "
                     f"{uce(u_i, err):.4f} | {cal_s.scale:.2f} | {sc['PSNR'][0]:.2f} / {sc['PSNR'][1]:.2f} | "
                     f"{sc['SSIM'][0]:.4f} / {sc['SSIM'][1]:.4f} | {med_clear:.2f} / {med_cloud:.2f} |")
        figs[split] = dict(spread=spread, err=err, u_i=u_i, u_s=u_s, cls=cls)
    lines += ["", "Spearman per pixel with the absolute error of the mean: of the raw spread, and of the calibrated uncertainty (the "
              "spread averaged over the window chosen on the other family, then scaled). UCE in model space ([-1, 1]); the medians in uint8 values (0..255), isotonic calibration, pixels whose "
              "cloud masks say clear (some date clear of cloud and shadow) or thick cloud (every date under cloud).", ""]
    draw(label, res, figs, cal_i_of={s: cals[FIT_ON[s]]["isotonic"] for s in res}, path=out / f"{label.replace('(', '').replace(')', '').replace(' ', '_')}.png")
    return "\n".join(lines)


def draw(label, res, figs, cal_i_of, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from emrdm.uncertainty import expected_error, reliability
    fig = plt.figure(figsize=(15, 7.4), dpi=80)
    for row, split in enumerate(FAMILIES):
        v, i = res[split], 1
        s = v["ds"][i]
        mu = s["mu"][0] if s["mu"].ndim == 4 else s["mu"]
        u = expected_error(v["r"].spread[i], cal_i_of[split]).mean(0) * 127.5
        e = v["r"].error[i].abs().mean(0) * 127.5
        vmax = float(np.percentile(torch.cat([u.flatten(), e.flatten()]).numpy(), 99))
        panels = [(mu, "cloudy" + (" date 0" if s["mu"].ndim == 4 else "")), (v["r"].mean[i], "mean of K"), (s["target"], "truth")]
        for c, (x, t) in enumerate(panels): show(fig.add_subplot(2, 7, row * 7 + c + 1), x, f"{t} ({split})")
        for c, (img, t, kw) in enumerate(((v["masks"][i], "mask: clear / partly / thick", dict(cmap="gray", vmin=0, vmax=2)),
                                          (e.numpy(), "|error| of the mean", dict(cmap="magma", vmin=0, vmax=vmax)),
                                          (u.numpy(), "uncertainty (calibrated)", dict(cmap="magma", vmin=0, vmax=vmax)))):
            a = fig.add_subplot(2, 7, row * 7 + c + 4); a.imshow(img, **kw); a.set_title(t, fontsize=8); a.axis("off")
        a = fig.add_subplot(2, 7, row * 7 + 7)
        f = figs[split]
        for uu, name in ((f["spread"], "raw spread"), (f["u_i"], "isotonic, fitted on the other family")):
            pu, pe, _ = reliability(uu, f["err"], 20)
            a.plot(pu * 127.5, pe * 127.5, "o-", ms=3, label=name)
        top = float(max(pe.max(), pu.max())) * 127.5
        a.plot([0, top], [0, top], "k:", lw=1); a.set(xlabel="predicted |error| (0..255)", ylabel="observed |error|")
        a.set_title("reliability", fontsize=8); a.legend(fontsize=6)
    fig.suptitle(f"{label}: held-out tiles; uncertainty = expected absolute error (uint8 units)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    fig, ax = plt.subplots(1, 2, figsize=(9, 2.8), dpi=80)
    for a, split in zip(ax, FAMILIES):
        f = figs[split]
        bins = np.linspace(0, float(np.percentile(f["u_i"].numpy(), 99.5)) * 127.5, 60)
        for c, name in ((0, "clear"), (2, "thick cloud")):
            a.hist(f["u_i"].numpy()[f["cls"] == c] * 127.5, bins=bins, density=True, alpha=0.6, label=name)
        a.set(xlabel="uncertainty (expected |error|, 0..255)", title=split); a.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path.with_name(path.stem + "_hist.png"))


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*LPIPS is reported.*")
    from emrdm.checkpoint import load
    from emrdm.data.cuhk import L8CR
    from emrdm.data.l8crmt import L8CRMT
    demo = Path(args.demo); out = Path(args.out or demo / "uncertainty"); out.mkdir(parents=True, exist_ok=True)
    parts = []
    for kind, (data, cls) in dict(mono=("L8-CR", L8CR), multi=("L8-CR-MT", L8CRMT)).items():
        if args.only not in (None, kind): continue
        students = [demo / "distill" / f"{kind}-student1/checkpoints/last.ckpt", demo / kind / "student/checkpoints/last.ckpt"]
        ckpts = [(f"{kind} (4 steps)", demo / kind / "checkpoints/last.ckpt"),                  # make demo-distill's student, else make demo's
                 (f"{kind} 1-step student", next((p for p in students if p.is_file()), students[0]))]
        for label, ck in ckpts:
            if not ck.is_file(): print(f"    {ck}: not there, skipped"); continue
            print(f"\n[{label}] {ck}")
            parts.append(run_model(args, label, load(ck).eval(), demo / "data" / data, cls, kind, out))
            print(parts[-1])
    text = f"# make demo-uncertainty\n\n{torch.get_num_threads()} CPU threads, seed {args.seed}.\n\n" + "\n".join(parts)
    write_text(out / "results.md", text)
    print(f"\n{out / 'results.md'}")


if __name__ == "__main__":
    main()

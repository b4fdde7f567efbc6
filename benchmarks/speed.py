#!/usr/bin/env python3
"""How close the released networks run to this machine's own matmul rate, in fp32 and bf16, and how much faster
than an earlier checkout of emrdm: every number below is measured in this one run.

    python benchmarks/speed.py                                   # this checkout only
    git worktree add /tmp/emrdm-base 8abd6cd                      # an earlier version, to compare against
    python benchmarks/speed.py --baseline /tmp/emrdm-base

Sections: the machine's fp32 and bf16 matmul rates (2048^3); each released network's forward at 256x256, batch 1,
fp32 and under bf16 autocast, with its work in GFLOP and the share of the matmul rate it reaches; a training step
(loss, backward, AdamW) with the process's peak resident memory; the neighbourhood-attention layer alone (and
natten's CPU kernel where installed); sampling time per image at each config's own sampler steps. Training rows of this
checkout and the baseline run `--rounds` times in turn and the fastest run of each is kept, so that a slow spell of the
shared machine falls on neither side.

Work is counted two ways. "useful GFLOP": the linear layers as torch's FlopCounterMode counts them, plus attention
by formula (4 N^2 d per head for global attention, 4 N k^2 d for neighbourhood attention: what the model needs,
not what an implementation spends on masked keys). "counter GFLOP": FlopCounterMode's whole count for the
implementation at hand (it omits SDPA's fused CPU kernel and counts masked keys of the math path), shown for
comparison with earlier notes. Rows of the baseline run in a separate process with the baseline on PYTHONPATH.
"""
import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time

import torch


def median_time(fn, repeats, warmup=1):
    for _ in range(warmup): fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def matmul_rate(dtype, n=2048, repeats=5):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n ** 3 / median_time(lambda: a @ b, repeats, warmup=2) / 1e9


def memory_reuse():
    "emrdm's sampling, evaluation, inference and training run inside `reuse_freed_memory` (glibc); older checkouts have none."
    from emrdm import core
    return getattr(core, "reuse_freed_memory", contextlib.nullcontext)()


def net_inputs(model, size, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, cfg = model.config.network, model.config
    lead = (batch, cfg.data.frames or 3) if model.temporal else (batch,)
    x0 = torch.rand(batch, n.out_channels, size, size, generator=g) * 2 - 1
    mu = torch.rand(*lead, n.out_channels, size, size, generator=g) * 2 - 1
    extra = n.in_channels - n.out_channels
    cond = torch.rand(*lead, extra, size, size, generator=g) * 2 - 1 if extra > 0 else None
    return x0, mu, cond


def work(model, size):
    "(useful GFLOP, counter GFLOP) of one denoiser evaluation at `size`."
    from torch.utils.flop_counter import FlopCounterMode
    from emrdm.nn.hdit import SelfAttentionBlock
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, a, o: shapes.__setitem__(mod, o.shape))
             for m in model.modules() if isinstance(m, SelfAttentionBlock)]
    with torch.no_grad(), FlopCounterMode(display=False) as fc: denoise_fn(model, size)()
    for h in hooks: h.remove()
    counts = fc.get_flop_counts()["Global"]
    linear = sum(v for k, v in counts.items() if "mm" in str(k) and "bmm" not in str(k))
    attn = 0
    for mod, shp in shapes.items():
        tokens, width = shp[:-1].numel(), shp[-1]                         # [B, H, W, heads * d]
        keys = shp[1] * shp[2] if mod.kernel_size is None else mod.kernel_size ** 2
        attn += 4 * tokens * keys * width
    return (linear + attn) / 1e9, fc.get_total_flops() / 1e9


def denoise_fn(model, size):
    _, x, cond = net_inputs(model, size)              # a noisy state shaped like mu (one per date), its condition
    sigma = torch.tensor([1.0])
    return lambda: model.denoise(x, sigma, cond)


def randomise(model, seed=0):
    "Small random weights everywhere (the zero-initialised projections too), so bf16's error is measured on a live network."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.uniform_(-0.05, 0.05, generator=g)
        for m in model.modules():                      # the cosine-similarity logit scales must stay positive
            if type(m).__name__ == "SelfAttentionBlock": m.scale.uniform_(5, 15, generator=g)
    return model


def row_forward(name, size, repeats):
    import emrdm
    model = randomise(emrdm.EMRDM.from_config(name)).eval()
    f = denoise_fn(model, size)
    with torch.no_grad(), memory_reuse():
        ref = f()
        t32 = median_time(f, repeats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = f()
            t16 = median_time(f, repeats)
    rel = ((low.float() - ref).norm() / ref.norm()).item()
    useful, counter = work(model, size)
    return dict(fp32_s=t32, bf16_s=t16, rel_err=rel, useful=useful, counter=counter,
                params=sum(p.numel() for p in model.net.parameters()) / 1e6)


def row_train(name, size, batch, repeats):
    import emrdm
    model = emrdm.EMRDM.from_config(name.split("@")[0]).train()          # "tiny-l8cr@128": the config at another size
    x0, mu, cond = net_inputs(model, size, batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    def step():
        loss = model.loss(x0, mu, cond, generator=g).mean()
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    with memory_reuse(): t = median_time(step, repeats)
    return dict(step_s=t, peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def row_sample(name, size):
    import emrdm
    model = emrdm.EMRDM.from_config(name).eval()
    _, mu, cond = net_inputs(model, size)
    with torch.no_grad():
        t = median_time(lambda: model.sample(mu, cond, generator=torch.Generator().manual_seed(0)), 1)
    return dict(sample_s=t, steps=model.config.sampler.steps)


def row_attention(repeats):
    from emrdm.nn import attention as A
    g = torch.Generator().manual_seed(0)
    res = {}
    for H, nh in ((256, 2), (128, 4)):
        q, k, v = (torch.randn(1, H, H, nh, 64, generator=g) for _ in range(3))
        with torch.no_grad(), memory_reuse():
            res[f"{H}_fwd_s"] = median_time(lambda: A.na2d_torch(q, k, v, 7), repeats)
            qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
            res[f"{H}_bf16_s"] = median_time(lambda: A.na2d_torch(qb, kb, vb, 7), repeats)
            if A.natten_api() is not None:
                try: res[f"{H}_natten_s"] = median_time(lambda: A.na2d_natten(q, k, v, 7), repeats)
                except Exception as e: res[f"{H}_natten_s"] = f"failed: {e}"[:80]
        qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
        with memory_reuse(): res[f"{H}_fwdbwd_s"] = median_time(lambda: A.na2d_torch(qg, kg, vg, 7).square().sum().backward(), max(1, repeats - 1))
    return res


def worker(args):
    kind, name = args.row
    out = {"forward": lambda: row_forward(name, args.size, args.repeats),
           "train": lambda: row_train(name, *TRAIN[name], args.repeats),
           "sample": lambda: row_sample(name, args.size),
           "attention": lambda: row_attention(args.repeats)}[kind]()
    print(json.dumps(out))


# size, batch; "@128": the same config at the demo's training crops
TRAIN = {"tiny-l8cr": (64, 4), "tiny-l8cr@128": (128, 4), "tiny-l8cr-mt": (64, 4), "cuhk": (256, 1), "sen2mtc": (256, 1)}


def run_row(kind, name, args, src):
    env = dict(os.environ)
    if src: env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, os.path.abspath(__file__), "--row", kind, name, "--size", str(args.size), "--repeats", str(args.repeats)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=src or None)
    lines = p.stdout.strip().splitlines()
    if p.returncode or not lines:
        return {"error": (p.stderr.strip().splitlines() or ["no output"])[-1][:120]}
    return json.loads(lines[-1])


def alternate(kind, name, args, here, base, key):
    """Rows of this checkout and of the baseline, each run `args.rounds` times in turn (ours, base, ours, base, ...), the
    fastest run of each kept: the machine is shared, other work only ever slows a run down, and minutes apart the same
    code ran 20-50 % (once 4x) slower."""
    runs = {"ours": [], "base": []}
    for _ in range(args.rounds):
        runs["ours"].append(run_row(kind, name, args, here))
        if base: runs["base"].append(run_row(kind, name, args, base))
    def fastest(rows):
        good = [r for r in rows if "error" not in r]
        return min(good, key=lambda r: r[key]) if good else (rows[0] if rows else {})
    return fastest(runs["ours"]), fastest(runs["base"])


def ratio(base, ours, key):
    if not base or key not in base or key not in ours: return "n/a"
    return f"{base[key] / ours[key]:.2f}x"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["cuhk", "sen2mtc"])
    ap.add_argument("--train-configs", nargs="+", default=["tiny-l8cr", "tiny-l8cr@128", "cuhk"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="training rows: runs of ours and the baseline's, in turn")
    ap.add_argument("--baseline", default=None, help="an earlier checkout of emrdm to compare against (default: none)")
    ap.add_argument("--row", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.row: return worker(args)
    base = os.path.abspath(args.baseline) if args.baseline else None
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, baseline: {args.baseline or 'none'}\n")
    r32, r16 = matmul_rate(torch.float32), matmul_rate(torch.bfloat16)
    print(f"matmul 2048^3: fp32 {r32:.0f} GFLOP/s, bf16 {r16:.0f} GFLOP/s\n", flush=True)

    print(f"## Forward, {args.size}x{args.size}, batch 1\n")
    print("| config | params M | useful GFLOP | counter GFLOP | fp32 s | share of fp32 rate (useful / counter) | "
          "bf16 s | bf16 speed-up | share of bf16 rate | bf16 rel. error | fp32 vs baseline | bf16 vs baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.configs:
        ours = run_row("forward", name, args, here)
        b = run_row("forward", name, args, base) if base else None
        if "error" in ours: print(f"| {name} | failed: {ours['error']} |"); continue
        print(f"| {name} | {ours['params']:.1f} | {ours['useful']:.1f} | {ours['counter']:.1f} | {ours['fp32_s']:.2f} | "
              f"{ours['useful'] / ours['fp32_s'] / r32:.0%} / {ours['counter'] / ours['fp32_s'] / r32:.0%} | "
              f"{ours['bf16_s']:.2f} | {ours['fp32_s'] / ours['bf16_s']:.2f}x | {ours['useful'] / ours['bf16_s'] / r16:.0%} | "
              f"{ours['rel_err']:.4f} | {ratio(b, ours, 'fp32_s')} | {ratio(b, ours, 'bf16_s')} |", flush=True)

    print("\n## Training step (loss, backward, AdamW), fp32\n")
    print("| config | size x batch | step s | peak RSS MiB | baseline step s | baseline peak MiB | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in args.train_configs:
        ours, b = alternate("train", name, args, here, base, "step_s")
        if "error" in ours: print(f"| {name} | failed: {ours['error']} |"); continue
        size, batch = TRAIN[name]
        print(f"| {name} | {size}x{size} x {batch} | {ours['step_s']:.2f} | {ours['peak_mib']:.0f} | "
              f"{b.get('step_s', float('nan')):.2f} | {b.get('peak_mib', float('nan')):.0f} | {ratio(b, ours, 'step_s')} |", flush=True)

    print("\n## Neighbourhood attention alone (k = 7, heads of 64)\n")
    ours = run_row("attention", "-", args, here)
    b = run_row("attention", "-", args, base) if base else {}
    print("| tokens x heads | fp32 fwd ms | bf16 fwd ms | fp32 fwd+bwd ms | natten CPU fwd ms | fwd vs baseline | fwd+bwd vs baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for H, nh in ((256, 2), (128, 4)):
        nat = ours.get(f"{H}_natten_s", "not installed")
        nat = f"{nat * 1000:.0f}" if isinstance(nat, float) else nat
        print(f"| {H}x{H} x {nh} | {ours[f'{H}_fwd_s'] * 1000:.0f} | {ours[f'{H}_bf16_s'] * 1000:.0f} | "
              f"{ours[f'{H}_fwdbwd_s'] * 1000:.0f} | {nat} | {ratio(b, ours, f'{H}_fwd_s')} | {ratio(b, ours, f'{H}_fwdbwd_s')} |", flush=True)

    print(f"\n## Sampling, one {args.size}x{args.size} image, fp32\n")
    print("| config | steps | seconds | vs baseline |")
    print("|---|---:|---:|---:|")
    for name in args.configs:
        ours = run_row("sample", name, args, here)
        b = run_row("sample", name, args, base) if base else None
        if "error" in ours: print(f"| {name} | failed: {ours['error']} |"); continue
        print(f"| {name} | {ours['steps']} | {ours['sample_s']:.2f} | {ratio(b, ours, 'sample_s')} |", flush=True)


if __name__ == "__main__":
    main()

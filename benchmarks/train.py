#!/usr/bin/env python3
"""Training step time, peak memory and sampling time per image, per configuration.

    python benchmarks/train.py [--size 64] [--configs cuhk sen12mscr sen2mtc] [--device cpu|cuda]

A training step is the loss, backward, AdamW step and EMA update of `emrdm.train.EMRDMTask`'s recipe, batch 1.
Sampling uses each configuration's own sampler (steps and churn of the paper). On a CPU each configuration runs in
its own process and reports that process's peak resident memory; on a GPU, torch.cuda.max_memory_allocated.
"""
import argparse
import resource
import subprocess
import sys
import time

import torch


def one(name, size, device, repeats):
    import emrdm
    from emrdm.train import EMA
    dev = torch.device(device)
    model = emrdm.EMRDM.from_config(name).to(dev)
    cfg = model.config
    n = cfg.network
    lead = (1, cfg.data.frames or 3) if model.temporal else (1,)
    x0 = torch.rand(1, n.out_channels, size, size, device=dev) * 2 - 1
    mu = torch.rand(*lead, n.out_channels, size, size, device=dev) * 2 - 1
    cond = torch.rand(*lead, n.in_channels - n.out_channels, size, size, device=dev) * 2 - 1 if n.in_channels > n.out_channels else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    ema = EMA(model.net, cfg.train.ema_decay)

    def step():
        loss = model.loss(x0, mu, cond).mean()
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); ema.update(model.net)

    def sync():
        if dev.type == "cuda": torch.cuda.synchronize()

    step(); sync()
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); step(); sync(); times.append(time.perf_counter() - t0)
    t_step = sorted(times)[len(times) // 2] * 1000
    model.eval()
    model.sample(mu, cond, generator=torch.Generator().manual_seed(0)); sync()
    t0 = time.perf_counter(); model.sample(mu, cond, generator=torch.Generator().manual_seed(1)); sync()
    t_sample = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = cfg.sampler
    print(f"| {name} | {size}x{size} | {t_step:.0f} | {mem:.0f} | {s.steps} ({s.solver}, churn {s.s_churn:g}) | {t_sample:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["cuhk", "cuhkv2", "sen12mscr", "sen2mtc"])
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    size = a.size or (256 if a.device == "cuda" else 64)
    if a.one: return one(a.one, size, a.device, a.repeats)
    mem = "peak MiB (GPU)" if a.device == "cuda" else "peak RSS MiB (process)"
    print(f"torch {torch.__version__}, device {a.device}, {torch.get_num_threads()} threads, batch 1\n")
    print(f"| config | size | train step ms | {mem} | sampler steps | sampling s/image |")
    print("|---|---|---:|---:|---|---:|")
    for name in a.configs:
        cmd = [sys.executable, __file__, "--one", name, "--size", str(size), "--device", a.device, "--repeats", str(a.repeats)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = out.stdout.strip().splitlines()
        print(lines[-1] if out.returncode == 0 and lines else f"| {name} | failed: {out.stderr.strip().splitlines()[-1][:100]} |", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Time and memory of the EMRDM networks and of neighbourhood attention, per config and backend.

    python benchmarks/network.py                 # CPU: reduced sizes; GPU: 256x256 inputs
    python benchmarks/network.py --size 64 --configs cuhk sen2mtc --repeats 3
    python benchmarks/network.py --attention-only

Prints tables (markdown) of forward and forward+backward milliseconds and peak memory. Peak memory is
torch.cuda.max_memory_allocated during forward+backward on a GPU. On a CPU each network row runs in its own
process and reports that process's peak resident memory (weights, gradients and activations, plus about 0.3 GiB
of Python and PyTorch).
"""
import argparse
import resource
import subprocess
import sys
import time

import torch

import emrdm
from emrdm.nn.attention import na2d_natten, na2d_torch, natten_api


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def peak_mb(device):
    "Peak GPU memory allocated since the last reset, or this process's peak resident memory on a CPU (MiB)."
    if device.type == "cuda": return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, device, repeats, warmup=1):
    "Median milliseconds of `fn()` over `repeats` runs after `warmup` runs, and the peak memory (MiB)."
    for _ in range(warmup): fn()
    sync(device)
    if device.type == "cuda": torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(device); times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2], peak_mb(device)


def bench_networks(args, device):
    mem = "peak MiB (GPU, fwd+bwd)" if device.type == "cuda" else "peak RSS MiB (process)"
    print(f"\n## Networks ({device}, {args.dtype}, batch {args.batch}, {args.size}x{args.size})\n")
    print(f"| config | backend (global / neighbourhood) | params | forward ms | fwd+bwd ms | {mem} |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.configs:
        for attn, na in args.backends:
            if device.type == "cpu":                       # a fresh process per row, so its peak RSS is this row's
                cmd = [sys.executable, __file__, "--device", "cpu", "--size", str(args.size), "--batch", str(args.batch),
                       "--dtype", args.dtype, "--repeats", str(args.repeats), "--row", name, attn, na]
                print(subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[-1], flush=True)
            else:
                bench_row(args, device, name, attn, na)


def bench_row(args, device, name, attn, na):
    "One table row: forward and forward+backward of one config with one pair of attention backends."
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    try:
        model = emrdm.EMRDM.from_config(name, attn_backend=attn, na_backend=na).to(device)
    except Exception as e:
        print(f"| {name} | {attn} / {na} | - | {type(e).__name__}: {e} | | |"); return
    n = model.config.network
    lead = (args.batch, model.config.data.frames or 3) if model.temporal else (args.batch,)
    x_in = torch.randn(*lead, n.in_channels, args.size, args.size, device=device)
    c_noise = torch.zeros(args.batch, device=device)
    params = sum(p.numel() for p in model.net.parameters())
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def fwd():
        with torch.no_grad(), autocast: model.net(x_in, c_noise)

    def fwd_bwd():
        with autocast: out = model.net(x_in, c_noise)
        out.float().square().mean().backward()
        model.net.zero_grad(set_to_none=True)
    try:
        t_f, _ = timed(fwd, device, args.repeats)
        t_fb, mem = timed(fwd_bwd, device, args.repeats)
        print(f"| {name} | {attn} / {na} | {params:,} | {t_f:.1f} | {t_fb:.1f} | {mem:.0f} |")
    except Exception as e:
        print(f"| {name} | {attn} / {na} | {params:,} | {type(e).__name__}: {str(e)[:80]} | | |")
    del model
    if device.type == "cuda": torch.cuda.empty_cache()


def bench_attention(args, device):
    print(f"\n## Neighbourhood attention, kernel 7 ({device}, fp32, batch 1, head size 64; natten API: {natten_api()})\n")
    print("| tokens | heads | ours fwd ms | ours fwd+bwd ms | natten fwd ms | natten fwd+bwd ms | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for size in args.attention_sizes:
        for heads in args.attention_heads:
            g = torch.Generator(device="cpu").manual_seed(0)
            q, k, v = (torch.randn(1, size, size, heads, 64, generator=g).to(device).requires_grad_() for _ in range(3))

            def ours_f():
                with torch.no_grad(): return na2d_torch(q, k, v, 7)

            def ours_fb():
                na2d_torch(q, k, v, 7).sum().backward()
            t1, _ = timed(ours_f, device, args.repeats)
            t2, _ = timed(ours_fb, device, args.repeats)
            nat_f = nat_fb = diff = "n/a"
            if natten_api() is not None:
                qd, kd, vd = q.detach(), k.detach(), v.detach()     # natten's CPU kernels refuse inputs that need grad

                def nat_forward():
                    with torch.no_grad(): return na2d_natten(qd, kd, vd, 7)
                nat_f = f"{timed(nat_forward, device, max(1, args.repeats // 2))[0]:.1f}"
                diff = f"{(nat_forward() - ours_f()).abs().max().item():.1e}"
                try:
                    def nat_fb_fn(): na2d_natten(q, k, v, 7).sum().backward()
                    nat_fb = f"{timed(nat_fb_fn, device, max(1, args.repeats // 2))[0]:.1f}"
                except Exception as e:
                    nat_fb = f"not supported ({type(e).__name__})"
            print(f"| {size}x{size} | {heads} | {t1:.1f} | {t2:.1f} | {nat_f} | {nat_fb} | {diff} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", nargs="+", default=["cuhk", "sen12mscr", "sen2mtc"])
    ap.add_argument("--size", type=int, default=None, help="image size (default 256 on GPU, 64 on CPU)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--attention-only", action="store_true")
    ap.add_argument("--networks-only", action="store_true")
    ap.add_argument("--attention-sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--attention-heads", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--row", nargs=3, metavar=("CONFIG", "ATTN", "NA"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device(args.device)
    args.size = args.size or (256 if device.type == "cuda" else 64)
    gpu = device.type == "cuda"
    if args.row: return bench_row(args, device, *args.row)
    args.backends = [("sdpa", "torch")] + ([("sdpa", "natten"), ("flash", "natten")] if gpu else [])
    print(f"torch {torch.__version__}, emrdm {emrdm.__version__}, threads {torch.get_num_threads()}, "
          f"device {torch.cuda.get_device_name() if gpu else 'cpu'}")
    if not args.attention_only: bench_networks(args, device)
    if not args.networks_only: bench_attention(args, device)


if __name__ == "__main__":
    main()

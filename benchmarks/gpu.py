#!/usr/bin/env python3
"""The GPU check of `benchmarks/gpu.sh`: the optional kernels against the pure-PyTorch paths, then the released
networks' forward and training step in bf16, eager and under `torch.compile`, with images/s, peak memory and the
share of the GPU's measured bf16 matmul rate. Every number is measured in this one run.

    python benchmarks/gpu.py                          # on a CUDA machine (defaults: cuhk sen12mscr sen2mtc, batch 4)
    python benchmarks/gpu.py --device cpu --size 64 --batch 1 --configs tiny-l8cr --no-compile   # a smoke run anywhere

Work is the "useful GFLOP" of `benchmarks/speed.py` (linear layers counted by FlopCounterMode, attention by
formula), per image; a training step is counted as three forwards (forward, and a backward of about twice the work).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from speed import net_inputs, randomise, work   # noqa: E402


def sync(dev):
    if dev.type == "cuda": torch.cuda.synchronize()


def timed(fn, dev, repeats, warmup=2):
    "Median seconds of `fn()` after `warmup` calls."
    for _ in range(warmup): fn()
    sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(dev); times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def matmul_rate(dev, dtype, n):
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    return 2 * n ** 3 / timed(lambda: a @ b, dev, 10) / 1e9


def kernel_checks(dev):
    "Largest difference of natten and flash_attn from the pure-PyTorch paths, in bf16, on random inputs."
    from emrdm.nn import attention as A
    g = torch.Generator().manual_seed(0)
    rows = []
    q, k, v = (torch.randn(2, 64, 48, 4, 64, generator=g).to(dev, torch.bfloat16) for _ in range(3))
    ref = A.na2d_torch(q.float(), k.float(), v.float(), 7)
    if A.natten_api() is None: rows.append(("natten vs na2d_torch", "natten not installed"))
    else:
        try: rows.append(("natten vs na2d_torch", f"{(A.na2d_natten(q, k, v, 7).float() - ref).abs().max().item():.2e}"))
        except Exception as e: rows.append(("natten vs na2d_torch", f"failed: {type(e).__name__}: {str(e)[:80]}"))
    q, k, v = (torch.randn(2, 4, 1024, 64, generator=g).to(dev, torch.bfloat16) for _ in range(3))
    ref = A.global_attention(q.float(), k.float(), v.float(), backend="sdpa")
    if not A._flash_ok(q): rows.append(("flash_attn vs SDPA", "flash_attn not usable here"))
    else: rows.append(("flash_attn vs SDPA", f"{(A.global_attention(q, k, v, backend='flash').float() - ref).abs().max().item():.2e}"))
    print("| check (bf16 inputs, against float32 pure PyTorch) | max abs diff |\n|---|---:|")
    for name, val in rows: print(f"| {name} | {val} |")


def rows_for(name, args, dev, rate):
    import emrdm
    model = randomise(emrdm.EMRDM.from_config(name)).to(dev)
    gflop = work(model.cpu(), args.size)[0]                     # per image, counted on the CPU at batch 1
    model.to(dev)
    x0, mu, cond = (None if t is None else t.to(dev) for t in net_inputs(model, args.size, args.batch))
    sigma = torch.ones(args.batch, device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for compiled in ([False, True] if args.compile else [False]):
        net = model.net
        if compiled: model.net = torch.compile(net)
        try:
            def fwd():
                with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16): model.denoise(mu, sigma, cond)

            def step():
                with torch.autocast(dev.type, dtype=torch.bfloat16): loss = model.loss(x0, mu, cond).mean()
                opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            for kind, fn, flop in (("forward", fwd, gflop), ("train step", step, 3 * gflop)):
                if dev.type == "cuda": torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter(); fn(); sync(dev); first = time.perf_counter() - t0
                t = timed(fn, dev, args.repeats)
                mem = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
                print(f"| {name} | {kind} | {'compile' if compiled else 'eager'} | {args.batch} | {first:.1f} | {t * 1000:.1f} | "
                      f"{args.batch / t:.1f} | {mem:.2f} | {flop * args.batch / t / rate:.0%} |", flush=True)
        except Exception as e:
            print(f"| {name} | - | {'compile' if compiled else 'eager'} | failed: {type(e).__name__}: {str(e)[:100]} |", flush=True)
        finally:
            model.net = net


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", nargs="+", default=["cuhk", "sen12mscr", "sen2mtc"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="eager rows only")
    args = ap.parse_args()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    rate = matmul_rate(dev, torch.bfloat16, 8192 if dev.type == "cuda" else 1024)
    print(f"torch {torch.__version__}, {name}: bf16 matmul {rate / 1000:.1f} TFLOP/s measured\n")
    kernel_checks(dev)
    print(f"\n| config | what | mode | batch | first call s | ms | images/s | peak GiB | share of bf16 matmul rate |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for cfg in args.configs: rows_for(cfg, args, dev, rate)


if __name__ == "__main__":
    main()

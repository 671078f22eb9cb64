#!/usr/bin/env python3
"""PyTorch side-by-side of bench_kernels: the same shapes, done with stock torch ops.

  tree_attention   F.scaled_dot_product_attention with the tree mask (prefix + ancestors-or-self)
  verify_greedy    argmax of every node row, match against the parents' argmax, deepest path
  verify_sample    the vocabulary-wide part of sampling verification: temperature, top-k and
                   top-p shaping of every node row (sort based), as a sampler would do it
  recycler_update  top-k of every node row, scattered into the [vocab][k] matrix
  recycler_draft   the template's BFS as one gather per level
  step             verify + update + draft

Prints rows in the same table format as bench_kernels (median of CUDA-event timings after a
warm-up; GB/s against a device-to-device copy measured here). Needs a CUDA device.
"""
import argparse
import math

import torch
import torch.nn.functional as F

# The default Token Recycling template (native/core/kernels_abi.cpp): parent, rank per node.
PARENTS = [-1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 5,
           6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 11, 11, 12, 13, 14, 15, 16, 17, 17, 18, 21, 24, 26,
           27, 30, 30, 30, 30, 30, 31, 31, 32, 33, 34, 38, 41, 48, 51, 52, 55, 55, 55, 56, 57, 60, 65, 67, 70, 70, 73]
RANKS = [0, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6,
         7, 0, 1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0,
         0, 0, 0, 0, 0, 1, 0]

RUNS, WARMUP = 50, 10
PEAK = None


def time_us(fn):
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(RUNS):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2] * 1000.0


def row(kernel, shape, us, nbytes):
    gbs = nbytes / (us * 1e-6) / 1e9
    print(f"| {kernel:<22} | {shape:<44} | {us:10.1f} | {gbs:8.0f} | {100.0 * gbs / PEAK:7.1f} |", flush=True)


def measure_peak():
    global PEAK
    n = 1 << 30
    a = torch.ones(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    us = time_us(lambda: b.copy_(a))
    PEAK = 2.0 * n / (us * 1e-6) / 1e9
    print(f"peak: device-to-device copy of 1 GiB in {us:.1f} us = {PEAK:.0f} GB/s (read + write)\n")


def tree_parents(T, gen):
    return [-1] + [int(torch.randint(0, i, (1,), generator=gen)) for i in range(1, T)]


def bench_attention(B, P, T, H, Hkv, D, dtype):
    gen = torch.Generator().manual_seed(1)
    dev = "cuda"
    q = torch.rand(B, H, T, D, generator=gen).to(dev, dtype) * 2 - 1
    k = (torch.rand(B, Hkv, P + T, D, generator=gen) * 2 - 1).to(dev, dtype)
    v = (torch.rand(B, Hkv, P + T, D, generator=gen) * 2 - 1).to(dev, dtype)
    mask = torch.zeros(B, 1, T, P + T, dtype=torch.bool)
    mask[..., :P] = True
    for b in range(B):
        par = tree_parents(T, gen)
        for t in range(T):
            a = t
            while a >= 0:
                mask[b, 0, t, P + a] = True
                a = par[a]
    mask = mask.to(dev)
    kw = {}
    if H != Hkv:
        try:  # torch >= 2.5 shares kv heads itself; older versions need them repeated
            F.scaled_dot_product_attention(q[:, :, :1], k, v, attn_mask=mask[:, :, :1], enable_gqa=True)
            kw = {"enable_gqa": True}
        except TypeError:
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
    us = time_us(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kw))
    esz = torch.finfo(dtype).bits // 8
    nbytes = 2.0 * B * (P + T) * Hkv * D * esz + 2.0 * B * T * H * D * 4
    name = {torch.bfloat16: "bf16", torch.float16: "f16"}[dtype]
    row("tree_attention", f"B={B} P={P} T={T} H={H}/{Hkv} d={D} {name}", us, nbytes)


def shape_rows(logits, temperature, top_k, top_p):
    """Temperature, top-k, top-p of every row (the sort-based way samplers do it)."""
    x = logits / temperature
    kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
    x = x.masked_fill(x < kth, -math.inf)
    sorted_x, idx = torch.sort(x, dim=-1, descending=True)
    probs = sorted_x.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p
    sorted_x = sorted_x.masked_fill(drop, -math.inf)
    return torch.empty_like(x).scatter_(-1, idx, sorted_x).softmax(-1)


def bench_step(B, V):
    dev = "cuda"
    N = len(PARENTS)
    gen = torch.Generator(device=dev).manual_seed(2)
    par = torch.tensor(PARENTS, device=dev)
    rank = torch.tensor(RANKS, device=dev)
    depth = [0] * N
    for i in range(1, N):
        depth[i] = depth[PARENTS[i]] + 1
    levels = [torch.tensor([i for i in range(N) if depth[i] == d], device=dev) for d in range(1, max(depth) + 1)]
    adj = torch.randint(0, V, (V, 8), device=dev, generator=gen, dtype=torch.int32)
    roots = torch.randint(0, V, (B,), device=dev, generator=gen)

    def draft(roots):
        tok = torch.empty(B, N, dtype=torch.long, device=dev)
        tok[:, 0] = roots
        for lv in levels:
            tok[:, lv] = adj[tok[:, par[lv]], rank[lv]].long()
        return tok

    tokens = draft(roots)
    logits = torch.rand(B, N, V, device=dev, generator=gen) * 6 - 3
    fav = adj[tokens.reshape(-1), 0].long().reshape(B, N)
    logits.scatter_(-1, fav.unsqueeze(-1), 12.0)
    parent_idx = par.clamp(min=0).expand(B, N)

    def verify_greedy():
        amax = logits.argmax(-1)                               # every node row
        ok = tokens == amax.gather(1, parent_idx)              # child matches its parent's argmax
        ok[:, 0] = True
        for lv in levels:                                      # a path is ok only if its parent is
            ok[:, lv] &= ok[:, par[lv]]
        d = torch.tensor(depth, device=dev).expand(B, N)
        best = torch.where(ok, d * 1024 - torch.arange(N, device=dev), -1).argmax(-1)
        return amax.gather(1, best.unsqueeze(1)), best

    def verify_sample():
        p = shape_rows(logits, 0.8, 50, 0.9)
        return torch.multinomial(p.reshape(B * N, V), 1)

    def update():
        top = torch.topk(logits.reshape(B * N, V), 8, dim=-1).indices.int()
        adj[tokens.reshape(-1)] = top

    rows = B * N
    logits_bytes = rows * V * 4.0
    shape = f"B={B} nodes={N} V={V}"
    us = time_us(verify_greedy)
    row("verify_greedy", shape + " greedy", us, logits_bytes)
    us = time_us(verify_sample)
    row("verify_sample", shape + " T=0.8 k=50 p=0.9", us, logits_bytes)
    us = time_us(update)
    row("recycler_update", shape + " k=8", us, logits_bytes)
    us = time_us(lambda: draft(roots))
    row("recycler_draft", shape + " k=8", us, B * N * 8.0)
    for name, ver in (("greedy", verify_greedy), ("sample", verify_sample)):
        def step():
            ver()
            update()
            draft(roots)
        us = time_us(step)
        row("step (verify+upd+draft)", f"{shape} {name}", us, logits_bytes)


def main():
    global RUNS, WARMUP
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    RUNS = args.runs
    if args.quick:
        RUNS, WARMUP = min(RUNS, 10), 3
    if not torch.cuda.is_available():
        print("torch_kernels: no CUDA device")
        raise SystemExit(77)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}, median of {RUNS} runs after {WARMUP} warm-ups")
    measure_peak()
    print(f"| {'kernel':<22} | {'shape':<44} | {'median us':>10} | {'GB/s':>8} | {'% peak':>7} |")
    print(f"|{'-' * 24}|{'-' * 46}|{'-' * 12}|{'-' * 10}|{'-' * 9}|")
    with torch.inference_mode():
        bench_attention(1, 4096, 64, 32, 8, 128, torch.bfloat16)
        bench_attention(8, 4096, 64, 32, 8, 128, torch.bfloat16)
        bench_attention(1, 1024, 16, 32, 8, 128, torch.bfloat16)
        bench_attention(4, 2048, 32, 16, 16, 64, torch.float16)
        bench_step(1, 151936)
        if not args.quick:
            bench_step(32, 151936)


if __name__ == "__main__":
    main()

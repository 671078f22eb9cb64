#!/usr/bin/env python3
"""PyTorch side-by-side of bench_model: transformers' LlamaForCausalLM on the very weights bench_model wrote.

  bench_model --out-dir DIR        # writes DIR/{config.json,model.safetensors,logits.f32,reference.json}
  python3 bench/native/torch_llama.py DIR

Loads the checkpoint in bf16 on cuda and measures, with the prefix length and step counts bench_model used
(from DIR/reference.json):
  torch-eager decode    a loop of 1-token forwards with a DynamicCache, logits of the last token only, the
                        argmax brought to the host every step (as bench_model's verify does)
  torch-eager step      one forward of n tokens appended to the prefix (a plain causal batch, not a tree
                        mask: the same weights, the same attention span within one token), the argmax of
                        every row to the host; the cache cropped back to the prefix between runs (untimed)
  torch-compile decode  a StaticCache and torch.compile(mode="reduce-overhead") (CUDA graphs), if it
                        compiles within --compile-timeout seconds; "compile: failed (...)" otherwise
Rows have bench_model's columns plus how many times faster specula's row is. It also compares the logits of
bench_model's fixed 8-token sequence (DIR/logits.f32) with torch's in bf16 and in f32 (same bf16 weights,
upcast), and prints the largest differences. Needs a CUDA device.
"""
import argparse
import json
import os
import signal
import sys
import time

import numpy as np
import torch


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def load(path, dtype):
    from transformers import LlamaForCausalLM

    try:
        model = LlamaForCausalLM.from_pretrained(path, dtype=dtype)
    except TypeError:  # transformers before 4.56 knows only torch_dtype
        model = LlamaForCausalLM.from_pretrained(path, torch_dtype=dtype)
    return model.to("cuda").eval()


def row(name, n, ms, floor_ms, base_ms, ours_ms, decode):
    toks = f"{1e3 / ms:9.1f}" if decode else f"{'-':>9}"
    ratio = f"{ms / base_ms:13.2f}" if base_ms else f"{'-':>13}"
    faster = f"{ms / ours_ms:15.2f}x" if ours_ms else f"{'-':>16}"
    pct = f"{100.0 * floor_ms / ms:10.1f}" if floor_ms else f"{'-':>10}"
    print(f"| {name:<20} | {n:11d} | {ms:9.3f} | {toks} | {pct} | {ratio} | {faster} |", flush=True)


def compare_logits(model_bf16, path, ref):
    ours_file = os.path.join(path, "logits.f32")
    tokens = ref["tokens"]
    vocab = ref["n_vocab"]
    ours = np.fromfile(ours_file, dtype=np.float32).reshape(len(tokens), vocab)
    ids = torch.tensor([tokens], device="cuda")
    with torch.no_grad():
        bf16 = model_bf16(input_ids=ids).logits[0].float().cpu().numpy()
    model_f32 = load(path, torch.float32)
    with torch.no_grad():
        f32 = model_f32(input_ids=ids).logits[0].float().cpu().numpy()
    del model_f32
    torch.cuda.empty_cache()
    scale = float(np.abs(f32).max())
    for name, theirs in (("torch bf16", bf16), ("torch f32", f32)):
        diff = float(np.abs(theirs - ours).max())
        agree = int((theirs.argmax(-1) == ours.argmax(-1)).sum())
        print(f"logits: max |{name} - specula| = {diff:.4g} (max |logit| {scale:.3g}), argmax agrees at {agree}/{len(tokens)} positions")


def eager(model, ref, reps, warmup):
    from transformers import DynamicCache

    prefix_len, decode = ref["prefix"], ref["decode"]
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(11)
    prefix = torch.randint(3, vocab, (1, prefix_len), generator=gen).to("cuda")
    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # older transformers
        cache = DynamicCache()
    results = {}
    with torch.no_grad():
        model(input_ids=prefix, past_key_values=cache, use_cache=True, logits_to_keep=1)
        for n in (1, 2, 4, 8, 16, 32, 64, 128):
            toks = torch.randint(3, vocab, (1, n), generator=gen).to("cuda")
            times = []
            for r in range(warmup + reps):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = model(input_ids=toks, past_key_values=cache, use_cache=True)
                out.logits[0].argmax(-1).cpu()
                t = (time.perf_counter() - t0) * 1e3
                cache.crop(-n)  # drop the n new tokens (negative: a count in every transformers version)
                if r >= warmup:
                    times.append(t)
            results[n] = median(times)
        tok = torch.randint(3, vocab, (1, 1), generator=gen).to("cuda")
        times = []
        for r in range(warmup + decode):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model(input_ids=tok, past_key_values=cache, use_cache=True, logits_to_keep=1)
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            tok.item()
            if r >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return results, sum(times) / len(times)


class CompileTimeout(Exception):
    pass


def static_cache(model, max_len):
    import inspect

    from transformers import StaticCache

    params = inspect.signature(StaticCache.__init__).parameters
    kwargs = {"config": model.config, "max_cache_len": max_len}
    if "max_batch_size" in params:
        kwargs["max_batch_size"] = 1
    if "device" in params:
        kwargs["device"] = "cuda"
    if "dtype" in params:
        kwargs["dtype"] = torch.bfloat16
    return StaticCache(**kwargs)


def compiled_decode(model, ref, warmup):
    prefix_len, decode = ref["prefix"], ref["decode"]
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(11)
    prefix = torch.randint(3, vocab, (1, prefix_len), generator=gen).to("cuda")
    cache = static_cache(model, prefix_len + warmup + decode + 16)
    step = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    # transformers 5 static caches track their own length; older versions need cache_position.
    import inspect

    from transformers import LlamaForCausalLM

    needs_position = "cache_position" in inspect.signature(LlamaForCausalLM.forward).parameters

    def positions(start, n):
        return {"cache_position": torch.arange(start, start + n, device="cuda")} if needs_position else {}

    times = []
    with torch.no_grad():
        out = model(input_ids=prefix, past_key_values=cache, use_cache=True, logits_to_keep=1, **positions(0, prefix_len))
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        # More warm-up steps than eager's: the first calls compile and record the CUDA graph.
        for r in range(warmup + 3 + decode):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = step(input_ids=tok, past_key_values=cache, use_cache=True, logits_to_keep=1, **positions(prefix_len + r, 1))
            tok = out.logits[:, -1].argmax(-1, keepdim=True).clone()  # graph outputs are overwritten by the next replay
            tok.item()
            if r >= warmup + 3:
                times.append((time.perf_counter() - t0) * 1e3)
    return sum(times) / len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="bench_model's --out-dir")
    ap.add_argument("--reps", type=int, default=0, help="runs per tree size (default: bench_model's)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile-timeout", type=int, default=150, help="seconds allowed for the torch.compile row")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_llama: cuda unavailable; skipped")
        return 77
    with open(os.path.join(args.dir, "reference.json")) as f:
        ref = json.load(f)
    reps = args.reps or ref["reps"]
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = load(args.dir, torch.bfloat16)
    print(f"torch {torch.__version__}, transformers {__import__('transformers').__version__}, {torch.cuda.get_device_name()}; "
          f"loaded in {time.perf_counter() - t0:.1f} s, attention {getattr(model.config, '_attn_implementation', '?')}", flush=True)
    compare_logits(model, args.dir, ref)

    floor_ms, ours_steps, ours_decode = ref.get("floor_ms"), ref.get("steps_ms", {}), ref.get("decode_ms")
    steps, decode_ms = eager(model, ref, reps, args.warmup)
    print(f"\ntorch, prefix {ref['prefix']}, {ref['decode']} decode steps (mean), steps: median of {reps}; "
          f"last column: torch ms / specula ms")
    print(f"| {'row':<20} | {'tree tokens':>11} | {'ms':>9} | {'tok/s':>9} | {'% of floor':>10} | {'x 1-token step':>13} | {'specula faster by':>16} |")
    print("|----------------------|-------------|-----------|-----------|------------|---------------|------------------|")
    row("torch-eager decode", 1, decode_ms, floor_ms, None, ours_decode, True)
    for n, ms in steps.items():
        row("torch-eager step", n, ms, floor_ms, steps[1], ours_steps.get(str(n)), False)

    if args.no_compile:
        print("compile: skipped (--no-compile)")
        return 0

    def on_alarm(signum, frame):
        raise CompileTimeout(f"timeout after {args.compile_timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.compile_timeout)
    try:
        ms = compiled_decode(model, ref, args.warmup)
        signal.alarm(0)
        row("torch-compile decode", 1, ms, floor_ms, None, ours_decode, True)
    except Exception as e:  # a failed compile is a result to report, not a failed benchmark
        signal.alarm(0)
        print(f"compile: failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Skips interpreter teardown: inductor's compile workers (after a timed-out compile) could hold it up.
    os._exit(code)

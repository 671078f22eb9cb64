"""Held-out evaluation: next-token top-1 accuracy and loss for each model, and
draft-target agreement.

  /usr/bin/python3 evaluate.py            -> work/metrics/eval.json

* top-1 / loss: the held-out token stream (BOS before each held-out file) is
  cut into consecutive non-overlapping windows of ctx+1 tokens; every position
  of every window is predicted (argmax == truth). Held-out files never appear
  in training (split by file, see prep_data.py).
* agreement_teacher_forced: on the same windows, fraction of positions where
  argmax(draft) == argmax(target).
* agreement_greedy: for N_GEN_PROMPTS held-out prompts (file prefixes of 128
  tokens), the target generates GEN_LEN tokens greedily; reported is the fraction
  of those positions where the draft's argmax (given the same prefix) equals
  the target's token, i.e. the per-token acceptance rate of greedy speculative
  decoding, plus the mean accepted run length for draft length k=4.
"""
import json
import os
import time

import numpy as np
import torch

from common import CORPUS_DIR, WORK, ensure
from export_gguf import load_checkpoint

N_GEN_PROMPTS = 16
PROMPT_LEN = 128
GEN_LEN = 64


@torch.no_grad()
def windows(data, T):
    n = (data.size - 1) // T
    for i in range(n):
        yield torch.from_numpy(data[i * T:i * T + T + 1].astype(np.int64))


@torch.no_grad()
def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-windows", type=int, default=None, help="smoke test only")
    ap.add_argument("--gen-prompts", type=int, default=N_GEN_PROMPTS)
    ap.add_argument("--out", default=os.path.join(WORK, "metrics", "eval.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    target, tck, tpath = load_checkpoint("target")
    draft, dck, dpath = load_checkpoint("draft")
    target.to(device)
    draft.to(device)
    T = min(target.cfg.ctx, draft.cfg.ctx)
    data = np.fromfile(os.path.join(CORPUS_DIR, "heldout.u16"), dtype=np.uint16)
    stats = {k: {"correct": 0, "nll": 0.0} for k in ("target", "draft")}
    agree = total = 0
    t0 = time.time()
    B = 8
    ws = list(windows(data, T))[:args.max_windows]
    for i in range(0, len(ws), B):
        w = torch.stack(ws[i:i + B]).to(device)
        x, y = w[:, :-1], w[:, 1:]
        preds = {}
        for name, m in (("target", target), ("draft", draft)):
            logits = m(x).float()
            stats[name]["nll"] += float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"))
            preds[name] = logits.argmax(-1)
            stats[name]["correct"] += int((preds[name] == y).sum())
        agree += int((preds["target"] == preds["draft"]).sum())
        total += y.numel()
    res = {"heldout_tokens_scored": total, "window": T,
           "target": {"checkpoint": os.path.relpath(tpath, WORK), "step": tck["step"],
                      "top1": stats["target"]["correct"] / total, "loss": stats["target"]["nll"] / total},
           "draft": {"checkpoint": os.path.relpath(dpath, WORK), "step": dck["step"],
                     "top1": stats["draft"]["correct"] / total, "loss": stats["draft"]["nll"] / total},
           "agreement_teacher_forced": agree / total}
    print(json.dumps(res), "(%.0fs)" % (time.time() - t0), flush=True)

    # greedy-generation agreement
    meta = json.load(open(os.path.join(CORPUS_DIR, "heldout.meta.json")))
    files = [f for f in meta["files"] if f[2] > PROMPT_LEN + GEN_LEN + 200]
    step = max(1, len(files) // args.gen_prompts)
    acc_tok = acc_tot = 0
    runs = []
    for path, off, n in files[::step][:args.gen_prompts]:
        start = off + (n // 3)                 # a prefix from inside the file
        prompt = data[off:off + 1].tolist() + data[start:start + PROMPT_LEN - 1].tolist()
        gen = target.greedy(prompt, GEN_LEN)
        seq = torch.tensor([prompt + gen], device=device)
        dpred = draft(seq)[0, len(prompt) - 1:-1].argmax(-1).tolist()
        match = [int(a == b) for a, b in zip(dpred, gen)]
        acc_tok += sum(match)
        acc_tot += len(match)
        # greedy speculative decoding with draft length k=4: tokens accepted per draft round
        i = 0
        while i < len(match):
            r = 0
            while r < 4 and i + r < len(match) and match[i + r]:
                r += 1
            runs.append(r)
            i += r + 1
    res["agreement_greedy"] = {"prompts": min(args.gen_prompts, len(files[::step])), "prompt_len": PROMPT_LEN,
                               "gen_len": GEN_LEN, "token_agreement": acc_tok / acc_tot,
                               "mean_accepted_per_round_k4": float(np.mean(runs))}
    ensure(os.path.dirname(args.out))
    out = args.out
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1), "(%.0fs)" % (time.time() - t0))


if __name__ == "__main__":
    main()

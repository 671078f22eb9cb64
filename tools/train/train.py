"""Step 4: train one model (draft or target) for a FIXED number of steps.

  nice -n 5 /usr/bin/python3 train.py --model target --steps 1500

AdamW (0.9, 0.95), wd 0.1 on matrices only, linear warmup + cosine decay to
10% of peak, grad clip 1.0, fixed seed; random contexts of cfg.ctx+1 tokens
sampled from the train stream by a seeded generator. Checkpoints (model +
optimizer + RNG state) are written every --ckpt-every steps to
work/ckpt/<model>/latest.pt, so a run can be resumed (--resume) or exported
at any time; the final weights go to work/ckpt/<model>/final.pt.
"""
import argparse
import json
import math
import os
import time

# On a shared, busy CPU, spinning OpenMP threads waste most of their time
# slice; passive waiting is far more robust (must be set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from common import CKPT_DIR, CORPUS_DIR, ensure
from model import CONFIGS, Llama


def get_batch(data, B, T, gen, device):
    ix = torch.randint(0, data.size - T - 1, (B,), generator=gen)
    x = np.stack([data[i:i + T + 1] for i in ix.tolist()]).astype(np.int64)
    x = torch.from_numpy(x).to(device)
    return x[:, :-1], x[:, 1:]


def lr_at(step, steps, peak, warmup, phase2_steps=0, phase2_peak=None, phase2_warmup=30):
    if step >= steps and phase2_steps:
        # phase 2 (warm restart): linear re-warm from 10% of the phase-1 peak to
        # phase2_peak, then cosine decay to 10% of phase2_peak
        s = step - steps
        if s < phase2_warmup:
            return 0.1 * peak + (phase2_peak - 0.1 * peak) * (s + 1) / phase2_warmup
        p = (s - phase2_warmup) / max(1, phase2_steps - phase2_warmup)
        return phase2_peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def save(path, model, opt, step, gen, args, log):
    tmp = path + ".tmp"
    torch.save({"cfg": model.cfg.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(),
                "step": step, "gen": gen.get_state(), "args": vars(args), "log": log}, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=list(CONFIGS), required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--phase2-steps", type=int, default=0,
                    help="extra steps after --steps with a warm-restarted cosine (peak --phase2-lr)")
    ap.add_argument("--phase2-lr", type=float, default=None, help="default: half the phase-1 peak")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", default="auto",
                    help="CPU threads: an integer, or 'auto' = every 200 steps time 10 steps with 1 and "
                         "with 2 threads and use the faster one (robust on a machine shared with builds)")
    args = ap.parse_args()

    auto = args.threads == "auto"
    threads = 2 if auto else int(args.threads)
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = CONFIGS[args.model]
    peak = args.lr if args.lr is not None else (3e-3 if args.model == "draft" else 2e-3)
    torch.manual_seed(args.seed)
    model = Llama(cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=peak, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator()
    gen.manual_seed(args.seed)
    out_dir = ensure(os.path.join(CKPT_DIR, args.model))
    latest = os.path.join(out_dir, "latest.pt")
    step, log = 0, []
    if args.resume and os.path.exists(latest):
        ck = torch.load(latest, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        step, log = ck["step"], ck["log"]
        print("resumed at step", step, flush=True)

    data = np.fromfile(os.path.join(CORPUS_DIR, "train.u16"), dtype=np.uint16)
    T, B = cfg.ctx, args.batch
    print("model %s params %d device %s tokens/step %d steps %d (+%d phase 2) peak_lr %g"
          % (args.model, model.n_params(), device, B * T, args.steps, args.phase2_steps, peak), flush=True)
    t0 = time.time()
    elapsed0 = log[-1]["elapsed_s"] if log else 0.0
    model.train()
    loss_acc, n_acc = 0.0, 0
    probe = {}
    total = args.steps + args.phase2_steps
    p2peak = args.phase2_lr if args.phase2_lr is not None else peak / 2
    while step < total:
        if auto and device == "cpu":
            phase = step % 200
            if phase in (0, 10):
                threads = 1 if phase == 0 else 2
                torch.set_num_threads(threads)
                probe_t0 = time.time()
            elif phase == 20 and probe:
                threads = min(probe, key=probe.get)
                torch.set_num_threads(threads)
                print("threads probe (s/10 steps):", {k: round(v, 1) for k, v in probe.items()},
                      "-> using", threads, flush=True)
        lr = lr_at(step, args.steps, peak, args.warmup, args.phase2_steps, p2peak)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch(data, B, T, gen, device)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if auto and device == "cpu" and step % 200 in (10, 20):
            probe[threads] = time.time() - probe_t0
        loss_acc += loss.item()
        n_acc += 1
        if step % args.log_every == 0 or step == total:
            el = elapsed0 + time.time() - t0
            rec = {"step": step, "loss": loss_acc / n_acc, "lr": lr, "elapsed_s": round(el, 1),
                   "tokens": step * B * T}
            log.append(rec)
            print(json.dumps(rec) + " tok/s=%.0f" % (step * B * T / el if el else 0), flush=True)
            loss_acc, n_acc = 0.0, 0
        if step % args.ckpt_every == 0 or step == total:
            save(latest, model, opt, step, gen, args, log)
    torch.save({"cfg": cfg.to_dict(), "model": model.state_dict(), "step": step,
                "args": vars(args), "log": log}, os.path.join(out_dir, "final.pt"))
    print("done", step, flush=True)


if __name__ == "__main__":
    main()

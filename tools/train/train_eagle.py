"""An EAGLE-1 draft layer for the demo target, trained on the target's own final hidden states over the JDK
training split and exported in EAGLE's published layout (config.json + model.safetensors).

  nice -n 10 /usr/bin/python3 train_eagle.py    # after prep_data.py, train_tokenizer.py, tokenize_corpus.py
                                                # (~12 min of one core; the defaults made the committed layer)

The layer (EAGLE-1, arXiv 2401.15077): row t reads token x[t+1] with the target's feature f[t] (its final hidden
state after the output norm, what the LM head reads) as x = fc([embd(x[t+1]); f[t]]) + b, then one llama decoder
layer without an input norm (layer 0 of EAGLE-1 has none): h = x + Wo attn(x); y = h + mlp(rmsnorm(h) * w_post).
y predicts f[t+1], and the target's LM head turns it into next-token logits (no norm in between). RoPE rotates
halves (the Hugging Face layout), base 10000. The embedding and the LM head are the target's, frozen and not
exported.

Loss, as EAGLE's: smooth-L1 between y and f[t+1], plus --cls-weight x cross-entropy of the LM head over y against
the target's distribution at t+1 (every row, or --cls-rows sampled ones); the input features get uniform noise of
+-0.1 (EAGLE's data augmentation). Drafting is unrolled over --passes passes (EagleLayer.unrolled, as EAGLE-3's
"training-time test"): pass m reads its own output of pass m-1 as the feature and attends as a depth-m draft does,
so the deeper drafts, which read predicted features, are trained too; pass m's loss is weighted --pass-decay^m. The
target's features for the fixed-seed windows are cached in work/eagle/features-*.pt, so a re-run skips that pass.

Writes models/demo-heads/eagle/{config.json,model.safetensors} (F16), models/demo-heads/eagle-reference.json (the
layer's outputs and logits for one prompt, for the Java parity test) and work/eagle/figures.json (for the model card).
Every run is bounded: --max-seconds stops training (between steps) however many epochs are left.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import CORPUS_DIR, MODELS, TOK_PREFIX, WORK, ensure
from train_heads import SEED, final_hidden, load_target, write_safetensors


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class EagleLayer(nn.Module):
    """EAGLE-1's draft model less its embedding and LM head; parameter names are the published file's keys."""

    def __init__(self, d, n_head, n_head_kv, head_dim, ffn, eps, theta):
        super().__init__()
        self.d, self.n_head, self.n_head_kv, self.head_dim, self.eps, self.theta = d, n_head, n_head_kv, head_dim, eps, theta
        self.fc = nn.Linear(2 * d, d, bias=True)
        layer = nn.Module()
        layer.self_attn = nn.Module()
        layer.self_attn.q_proj = nn.Linear(d, n_head * head_dim, bias=False)
        layer.self_attn.k_proj = nn.Linear(d, n_head_kv * head_dim, bias=False)
        layer.self_attn.v_proj = nn.Linear(d, n_head_kv * head_dim, bias=False)
        layer.self_attn.o_proj = nn.Linear(n_head * head_dim, d, bias=False)
        layer.mlp = nn.Module()
        layer.mlp.gate_proj = nn.Linear(d, ffn, bias=False)
        layer.mlp.up_proj = nn.Linear(d, ffn, bias=False)
        layer.mlp.down_proj = nn.Linear(ffn, d, bias=False)
        layer.post_attention_layernorm = nn.Module()
        layer.post_attention_layernorm.weight = nn.Parameter(torch.ones(d))
        self.layers = nn.ModuleList([layer])
        with torch.no_grad():  # start near the identity on the feature: y ~ f, EAGLE's easy first guess
            self.fc.weight.zero_()
            self.fc.weight[:, d:] += torch.eye(d)
            self.fc.weight[:, :d].normal_(0, 0.02)
            self.fc.bias.zero_()
            for m in (layer.self_attn.o_proj, layer.mlp.down_proj):
                m.weight.normal_(0, 0.02 / math.sqrt(2))

    def forward(self, emb, feat, positions=None):
        """emb, feat: [B, T, d] for rows t (embd(x[t+1]), f[t]); causal over T. Returns y [B, T, d]."""
        return self.unrolled(emb, feat, 1, positions)[0]

    def unrolled(self, emb, feat, passes, positions=None):
        """EAGLE's drafting unrolled over the sequence ("training-time test", as EAGLE-3 trains): pass 0 is forward();
        pass m reads at row t the token x[t+1] with pass m-1's output at row t-1 (its guess of f[t]; row 0 keeps f[0]),
        and attends as a depth-m draft does: to pass 0's rows j <= t-m (the committed rows, built on the target's
        features), then to pass k's row t-m+k for k = 1..m (its own ancestors in the draft). Returns the passes' outputs."""
        B, T, d = feat.shape
        L = self.layers[0]
        pos = torch.arange(T, dtype=torch.float64) if positions is None else positions.double()
        inv = self.theta ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim)
        ang = pos[:, None] * inv[None, :]
        cos = torch.cat((ang.cos(), ang.cos()), -1).float()
        sin = torch.cat((ang.sin(), ang.sin()), -1).float()
        g = self.n_head // self.n_head_kv
        ks, vs, ys = [], [], []
        t_idx = torch.arange(T)
        f_in = feat
        for m in range(passes):
            if m > 0:
                f_in = torch.cat((feat[:, :1], ys[-1][:, :-1]), dim=1)
            x = self.fc(torch.cat((emb, f_in), dim=-1))
            q = L.self_attn.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
            k = L.self_attn.k_proj(x).view(B, T, self.n_head_kv, self.head_dim).transpose(1, 2)
            v = L.self_attn.v_proj(x).view(B, T, self.n_head_kv, self.head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            ks.append(k.repeat_interleave(g, dim=1))
            vs.append(v.repeat_interleave(g, dim=1))
            # keys of row t: pass 0's rows j <= t - m, and pass k's row t - m + k (k = 1..m)
            allowed = [(t_idx[None, :] <= (t_idx[:, None] - m))]
            for kk in range(1, m + 1):
                allowed.append(t_idx[None, :] == (t_idx[:, None] - m + kk))
            allowed = torch.cat(allowed, dim=1)  # [T, (m+1) T]
            # rows t < m have no such ancestors in pass 0 (nothing before the first row): they attend to themselves
            # only through the pass-k diagonals that exist; row 0 always sees its own key
            K = torch.cat(ks, dim=2)
            Vv = torch.cat(vs, dim=2)
            att = (q @ K.transpose(-2, -1)) / math.sqrt(self.head_dim)
            att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
            h = x + L.self_attn.o_proj((att @ Vv).transpose(1, 2).reshape(B, T, -1))
            n = rms(h, L.post_attention_layernorm.weight, self.eps)
            ys.append(h + L.mlp.down_proj(F.silu(L.mlp.gate_proj(n)) * L.mlp.up_proj(n)))
        return ys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=512, help="training windows of --window tokens")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4, help="windows per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--ffn", type=int, default=688, help="the layer's intermediate size (the target's: 688)")
    ap.add_argument("--cls-rows", type=int, default=0, help="rows per step the classification loss samples (0: every row)")
    ap.add_argument("--cls-weight", type=float, default=0.5, help="weight of the token loss beside the feature regression")
    ap.add_argument("--passes", type=int, default=3, help="unrolled drafting passes per step (training-time test)")
    ap.add_argument("--pass-decay", type=float, default=0.8, help="loss weight of pass m: decay^m")
    ap.add_argument("--max-seconds", type=float, default=720)
    ap.add_argument("--eval-only", action="store_true", help="evaluate and export the last run's layer (work/eagle/layer.pt)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 on a shared machine, where idle OpenMP threads spin on a busy core (2 threads"
                         " took 4-6x the CPU time of 1 here)")
    ap.add_argument("--out", default=os.path.join(MODELS, "demo-heads"))
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    target = load_target(os.path.join(MODELS, "demo-target.gguf"))
    cfg = target.cfg
    E, V = cfg.d_model, cfg.vocab_size
    lm_head = target.tok_embd.weight.detach()
    embed = target.tok_embd

    def windows(split, n, seed):
        data = np.fromfile(os.path.join(CORPUS_DIR, split + ".u16"), dtype=np.uint16)
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, len(data) - args.window, size=n)
        return torch.from_numpy(np.stack([data[s:s + args.window] for s in starts]).astype(np.int64))

    cache_dir = ensure(os.path.join(WORK, "eagle"))

    def features(split, n, seed):
        path = os.path.join(cache_dir, f"features-{split}-{n}x{args.window}-{seed}.pt")
        win = windows(split, n, seed)
        if os.path.exists(path):
            cached = torch.load(path)
            if torch.equal(cached["tokens"], win):
                return win, cached["features"]
        hs = []
        with torch.no_grad():
            for k in range(0, len(win), 16):
                hs.append(final_hidden(target, win[k:k + 16]))
        h = torch.cat(hs)
        torch.save({"tokens": win, "features": h}, path)
        return win, h

    train_tok, train_f = features("train", args.windows, SEED)
    held_tok, held_f = features("heldout", max(8, args.windows // 12), SEED + 1)
    t_features = time.time() - t0
    print(f"features: {train_f.shape[0] * train_f.shape[1]} train and {held_f.shape[0] * held_f.shape[1]} held-out positions"
          f" in {t_features:.0f} s", flush=True)

    torch.manual_seed(SEED)
    layer = EagleLayer(E, cfg.n_head, cfg.n_head_kv, cfg.head_dim, args.ffn, cfg.eps, cfg.rope_theta)
    opt = torch.optim.AdamW(layer.parameters(), lr=args.lr, weight_decay=0.0)
    steps = args.epochs * math.ceil(len(train_tok) / args.batch)
    # The cosine runs over the steps that fit the time limit (measured on the first ones), so that a run cut by the
    # limit still ends at a small learning rate.
    horizon = [steps]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, horizon[0]) / horizon[0])))
    g = torch.Generator().manual_seed(SEED)

    def losses(tok, feat, noise):
        emb = embed(tok[:, 1:])
        f_in = feat[:, :-1]
        if noise:
            f_in = f_in + (torch.rand(f_in.shape, generator=g) * 0.2 - 0.1)
        ys = layer.unrolled(emb, f_in, args.passes)
        want = feat[:, 1:]
        n_rows = want.shape[0] * want.shape[1]
        rows = torch.randperm(n_rows, generator=g)[:args.cls_rows] if args.cls_rows else None
        want_s = want.reshape(-1, want.shape[-1])
        if rows is not None:
            want_s = want_s[rows]
        p = (want_s @ lm_head.t()).softmax(-1)
        reg_sum, cls_sum, w_sum = 0.0, 0.0, 0.0
        reg0 = cls0 = None
        for m, y in enumerate(ys):  # pass m's rows t >= m are depth-m drafts; the first m rows have no such chain
            w = args.pass_decay ** m
            y_m, want_m = y[:, m:], want[:, m:]
            reg = F.smooth_l1_loss(y_m, want_m)
            y_s = y.reshape(-1, y.shape[-1])
            valid = (torch.arange(want.shape[1]) >= m).repeat(want.shape[0])
            if rows is not None:
                y_s, valid = y_s[rows], valid[rows]
            ce = -(p * (y_s @ lm_head.t()).log_softmax(-1)).sum(-1)
            cls = ce[valid].mean()
            reg_sum, cls_sum, w_sum = reg_sum + w * reg, cls_sum + w * cls, w_sum + w
            if m == 0:
                reg0, cls0 = reg, cls
        return reg_sum / w_sum, cls_sum / w_sum, (reg0, cls0)

    t1 = time.time()
    step, stopped = 0, False
    ckpt = os.path.join(cache_dir, "layer.pt")
    if args.eval_only:  # the last run's trained layer, to redo evaluation and export
        saved = torch.load(ckpt)
        layer.load_state_dict(saved["layer"])
        step, stopped, reg, cls, t1 = saved["step"], saved["stopped"], saved["reg"], saved["cls"], time.time() - saved["seconds"]
        args.epochs = 0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(train_tok), generator=g)
        for k in range(0, len(perm), args.batch):
            idx = perm[k:k + args.batch]
            reg_all, cls_all, (reg, cls) = losses(train_tok[idx], train_f[idx], True)
            loss = reg_all + args.cls_weight * cls_all
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == 5 and not args.eval_only:
                per_step = (time.time() - t1) / step
                horizon[0] = max(20, min(steps, int(args.max_seconds / per_step)))
                print(f"{per_step:.2f} s per step: the schedule runs over {horizon[0]} steps", flush=True)
            if step % 20 == 0:
                print(f"eagle step {step}/{steps} reg {float(reg):.4f} cls {float(cls):.3f}", flush=True)
            if time.time() - t1 > args.max_seconds:
                stopped = True
                break
        if stopped:
            break
    train_seconds = time.time() - t1
    if not args.eval_only:
        torch.save({"layer": layer.state_dict(), "step": step, "stopped": stopped, "reg": reg.detach(), "cls": cls.detach(),
                    "seconds": train_seconds}, ckpt)
    with torch.no_grad():  # what the exported file holds
        for p in layer.parameters():
            p.copy_(p.half().float())
    acc = evaluate(layer, held_tok, held_f, embed, lm_head)
    print("held-out", acc, flush=True)
    out_dir = ensure(os.path.join(args.out, "eagle"))
    export(layer, out_dir, cfg, args.ffn)
    make_reference(target, layer, os.path.join(args.out, "eagle-reference.json"))
    figures = {"seed": SEED, "window": args.window, "train_windows": args.windows, "heldout_windows": len(held_tok),
               "feature_seconds": round(t_features), "train_seconds": round(train_seconds), "steps": step, "planned_steps": steps,
               "stopped_at_time_limit": stopped, "epochs": args.epochs, "batch_windows": args.batch, "cls_rows": args.cls_rows, "lr": args.lr,
               "cls_weight": args.cls_weight, "passes": args.passes, "pass_decay": args.pass_decay, "schedule_steps": horizon[0],
               "threads": args.threads, "ffn": args.ffn, "final_reg_loss": round(float(reg), 4), "final_cls_loss": round(float(cls), 4),
               "trainable_params": sum(p.numel() for p in layer.parameters()), "heldout": acc,
               "files": {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}}
    json.dump(figures, open(os.path.join(cache_dir, "figures.json"), "w"), indent=1)
    print(json.dumps(figures, indent=1))


def evaluate(layer, tok, feat, embed, lm_head):
    """Held-out agreement with the target's greedy token at draft depths 1-3, drafting as Specula does: depth 1 reads
    the target's features (the first draft after a verified step); depth m reads the layer's own predicted feature of
    depth m-1 and attends to the committed rows and its own draft ancestors (EagleLayer.unrolled)."""
    with torch.no_grad():
        emb = embed(tok[:, 1:])
        ys = layer.unrolled(emb, feat[:, :-1], 3)
        target_next = (feat @ lm_head.t()).argmax(-1)          # [B, T]: the target's token after position t
        out = {}
        for m, y in enumerate(ys):                               # row t predicts the token after x[t+1]
            drafted = (y @ lm_head.t()).argmax(-1)
            out[f"top1_depth{m + 1}"] = round(float((drafted[:, m:-1] == target_next[:, m + 1:-1]).float().mean()), 4)
    return out


def export(layer, out_dir, cfg, ffn):
    tensors = {name: (p.detach().numpy(), "F16") for name, p in layer.state_dict().items()}
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
    json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": cfg.d_model,
               "intermediate_size": ffn, "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_head_kv,
               "head_dim": cfg.head_dim, "num_hidden_layers": 1, "vocab_size": cfg.vocab_size, "rms_norm_eps": cfg.eps,
               "rope_theta": cfg.rope_theta, "max_position_embeddings": cfg.ctx, "hidden_act": "silu", "bias": True,
               "tie_word_embeddings": False, "torch_dtype": "float16", "base_model_name_or_path": "demo-target.gguf"},
              open(os.path.join(out_dir, "config.json"), "w"), indent=1)


REFERENCE_PROMPT = "    public static int max(int a, int b) {\n        return"


def make_reference(target, layer, path):
    """For one prompt: the target's features, then the layer over rows t = 0..n-2 (token x[t+1], feature f[t]): its
    outputs and LM-head logits at the last two rows, 6-7 digits."""
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    ids = [sp.bos_id()] + sp.encode(REFERENCE_PROMPT)
    with torch.no_grad():
        f = final_hidden(target, torch.tensor([ids]))
        y = layer(target.tok_embd(torch.tensor([ids[1:]])), f[:, :-1])[0]
        logits = y @ target.tok_embd.weight.t()
        rows = [{"row": r, "output": [float("%.7g" % v) for v in y[r].tolist()],
                 "logits": [float("%.6g" % v) for v in logits[r].tolist()]} for r in (len(ids) - 3, len(ids) - 2)]
    json.dump({"description": "PyTorch fp32 reference for the demo EAGLE layer: row t reads token tokens[t + 1] with the "
                              "target's final hidden state at t; its output (the predicted feature) and the LM head's logits",
               "prompt": REFERENCE_PROMPT, "tokens": ids, "rows": rows}, open(path, "w"), separators=(",", ":"))


if __name__ == "__main__":
    main()

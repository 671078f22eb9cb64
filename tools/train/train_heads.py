"""Draft heads for the demo target: a Hydra head set and a Medusa head set, trained on the target's own
final hidden states over the JDK training split, exported in the layouts Specula's loader reads.

  /usr/bin/python3 train_heads.py            # after prep_data.py, train_tokenizer.py, tokenize_corpus.py

Reads models/demo-target.gguf (its tokenizer must equal work/tokenizer/spm.model, checked), samples
fixed-seed windows of the train split, runs the target once over them to collect every position's final
hidden state (after the output norm) and the target's greedy next token, then trains:
  * Hydra (reference release layout, hydra_head_arch "mlp", grounded heads): head i reads
    [h_t; embd(x_{t+1}); ...; embd(x_{t+i+1})] and predicts the target's greedy token after x_{t+i+1};
  * Medusa: head i reads h_t alone and predicts the same token.
Each head is residual blocks then a vocabulary projection initialised from (and frozen at) the target's
LM head; the projection is not exported (Specula's heads then use the target's LM head, see the README),
which keeps each file to its blocks. Writes models/demo-heads/{hydra,medusa}/ (config.json and
{hydra,medusa}_lm_head.safetensors), models/demo-heads/reference.json (the heads' logits for the
Java parity test) and work/heads/figures.json (for the model card).
"""
import argparse
import json
import math
import os
import struct
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import CORPUS_DIR, MODELS, TOK_PREFIX, WORK, ensure
from gguf_reader import GGUFFile
from model import CONFIGS, Llama

SEED = 1234


def load_target(path):
    g = GGUFFile(path)
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    toks = g.kv["tokenizer.ggml.tokens"]
    assert len(toks) == sp.get_piece_size() and all(sp.id_to_piece(i) == t for i, t in enumerate(toks)), \
        "work/tokenizer/spm.model differs from the GGUF's vocabulary"
    cfg = CONFIGS["target"]
    model = Llama(cfg)
    t = lambda name: torch.from_numpy(g.tensors[name].copy())
    with torch.no_grad():
        model.tok_embd.weight.copy_(t("token_embd.weight"))
        model.output_norm.weight.copy_(t("output_norm.weight"))
        for i, b in enumerate(model.blocks):
            for attr, name in [("attn_norm", "attn_norm"), ("ffn_norm", "ffn_norm")]:
                getattr(b, attr).weight.copy_(t(f"blk.{i}.{name}.weight"))
            for attr, name in [("wq", "attn_q"), ("wk", "attn_k"), ("wv", "attn_v"), ("wo", "attn_output"),
                               ("w_gate", "ffn_gate"), ("w_up", "ffn_up"), ("w_down", "ffn_down")]:
                getattr(b, attr).weight.copy_(t(f"blk.{i}.{name}.weight"))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def final_hidden(model, idx):
    """[B, T, E]: each position's state after the output norm, what the LM head reads."""
    B, T = idx.shape
    from model import rope_tables
    cos, sin = rope_tables(model.cfg, T, idx.device)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    x = model.tok_embd(idx)
    for b in model.blocks:
        x = b(x, cos, sin, mask)
    return model.output_norm(x)


# ---- the heads, in the layouts of the reference releases (parameter names are the file's keys)

class ResBlock(nn.Module):
    """x' = res(x) + silu(linear(x)); res is the identity, or a linear map when the input is wider."""

    def __init__(self, d, n_condition=0):
        super().__init__()
        self.linear = nn.Linear(d * (n_condition + 1), d)
        nn.init.zeros_(self.linear.weight)
        self.res_connection = nn.Linear(d * (n_condition + 1), d) if n_condition else nn.Identity()
        if n_condition:  # starts as "take h": identity on the first d inputs, zero on the embeddings
            with torch.no_grad():
                self.res_connection.weight.zero_()
                self.res_connection.weight[:, :d] = torch.eye(d)
                self.res_connection.bias.zero_()

    def forward(self, x):
        return self.res_connection(x) + F.silu(self.linear(x))


class Hydra(nn.Module):
    """hydra_mlp.{i}.{j}.* and hydra_lm_head.{i}.*: the reference release's HydraMLP (grounded)."""

    def __init__(self, d, vocab, n_heads, n_layers, lm_head):
        super().__init__()
        self.hydra_mlp = nn.ModuleList([
            nn.Sequential(ResBlock(d, i + 1), *[ResBlock(d) for _ in range(n_layers - 1)]) for i in range(n_heads)])
        self.hydra_lm_head = nn.ModuleList([nn.Linear(d, vocab) for _ in range(n_heads)])
        for h in self.hydra_lm_head:
            with torch.no_grad():
                h.weight.copy_(lm_head)
                h.bias.zero_()
            h.weight.requires_grad_(False)

    def head(self, i, h, embs):
        """h [N, d]; embs [N, i + 1, d]: the embeddings of the root and the tokens drafted before head i."""
        x = torch.cat([h, embs.reshape(embs.shape[0], -1)], dim=-1)
        return self.hydra_lm_head[i](self.hydra_mlp[i](x))


class Medusa(nn.Module):
    """{i}.{j}.linear.* then {i}.{n_layers}.weight: medusa_lm_head.safetensors' layout."""

    def __init__(self, d, vocab, n_heads, n_layers, lm_head):
        super().__init__()
        self.heads = nn.ModuleList()
        for _ in range(n_heads):
            proj = nn.Linear(d, vocab, bias=False)
            with torch.no_grad():
                proj.weight.copy_(lm_head)
            proj.weight.requires_grad_(False)
            self.heads.append(nn.Sequential(*[ResBlock(d) for _ in range(n_layers)], proj))

    def head(self, i, h, embs=None):
        return self.heads[i](h)


def write_safetensors(path, tensors):
    """tensors: name -> (np.ndarray, dtype string 'F16'|'F32')."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        arr, dt = tensors[name]
        b = np.ascontiguousarray(arr, dtype=np.float16 if dt == "F16" else np.float32).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def export_hydra(heads, out_dir, n_heads, n_layers):
    ensure(out_dir)
    t = {}
    for name, p in heads.state_dict().items():
        if name.startswith("hydra_lm_head.") and name.endswith(".weight"):
            continue  # the frozen copy of the target's LM head: Specula uses the target's own
        t[name] = (p.detach().numpy(), "F16")
    write_safetensors(os.path.join(out_dir, "hydra_lm_head.safetensors"), t)
    json.dump({"hydra_num_heads": n_heads, "hydra_num_layers": n_layers, "hydra_head_arch": "mlp",
               "grounded_heads": True, "hidden_state_offset": 0, "base_model_name_or_path": "demo-target.gguf"},
              open(os.path.join(out_dir, "config.json"), "w"), indent=1)


def export_medusa(heads, out_dir, n_heads, n_layers):
    ensure(out_dir)
    t = {}
    for name, p in heads.state_dict().items():
        name = name[len("heads."):]
        if name.endswith(f".{n_layers}.weight"):
            continue  # the projection: the target's LM head
        t[name] = (p.detach().numpy(), "F16")
    write_safetensors(os.path.join(out_dir, "medusa_lm_head.safetensors"), t)
    json.dump({"medusa_num_heads": n_heads, "medusa_num_layers": n_layers,
               "base_model_name_or_path": "demo-target.gguf"}, open(os.path.join(out_dir, "config.json"), "w"), indent=1)


def round_f16(module):
    """What the exported file holds: every trained tensor rounded to f16, so evaluation and the reference
    outputs describe the committed weights."""
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.copy_(p.half().float())


def inputs(tokens, hidden, starts, i, embed):
    """For head i at positions starts: h_t and the embeddings of x_{t+1} .. x_{t+i+1}."""
    h = hidden[starts]
    idx = torch.stack([tokens[starts + 1 + j] for j in range(i + 1)], dim=1)
    return h, embed(idx)


def evaluate(heads, tokens, hidden, labels, positions, n_heads, embed):
    acc = []
    with torch.no_grad():
        for i in range(n_heads):
            ok = torch.tensor(positions)
            ok = ok[ok + i + 1 < len(tokens)]
            h, e = inputs(tokens, hidden, ok, i, embed)
            pred = heads.head(i, h, e).argmax(-1)
            acc.append(float((pred == labels[ok + i + 1]).float().mean()))
    return acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=192, help="training windows of --window tokens")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(MODELS, "demo-heads"))
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    target = load_target(os.path.join(MODELS, "demo-target.gguf"))
    E, V = target.cfg.d_model, target.cfg.vocab_size
    lm_head = target.tok_embd.weight.detach().clone()
    embed = target.tok_embd

    def windows(split, n, seed):
        data = np.fromfile(os.path.join(CORPUS_DIR, split + ".u16"), dtype=np.uint16)
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, len(data) - args.window, size=n)
        return torch.from_numpy(np.stack([data[s:s + args.window] for s in starts]).astype(np.int64))

    def collect(win):
        hs, ls = [], []
        with torch.no_grad():
            for k in range(0, len(win), 16):
                h = final_hidden(target, win[k:k + 16])
                hs.append(h)
                ls.append((h @ lm_head.t()).argmax(-1))
        return torch.cat(hs), torch.cat(ls)

    train_win = windows("train", args.windows, SEED)
    held_win = windows("heldout", max(16, args.windows // 12), SEED + 1)
    th, tl = collect(train_win)
    hh, hl = collect(held_win)
    t_hidden = time.time() - t0
    print(f"hidden states: {th.shape[0] * th.shape[1]} train and {hh.shape[0] * hh.shape[1]} held-out positions in {t_hidden:.0f} s", flush=True)
    # flatten; positions whose continuation stays inside the window
    W = args.window
    flat = lambda w, h, l: (w.reshape(-1), h.reshape(-1, E), l.reshape(-1))
    tok_t, hid_t, lab_t = flat(train_win, th, tl)
    tok_h, hid_h, lab_h = flat(held_win, hh, hl)
    valid = lambda n_win: [w * W + t for w in range(n_win) for t in range(W - args.heads - 1)]
    train_pos = torch.tensor(valid(len(train_win)))
    held_pos = valid(len(held_win))

    figures = {"seed": SEED, "window": W, "train_positions": len(train_pos), "heldout_positions": len(held_pos),
               "hidden_seconds": round(t_hidden), "threads": args.threads, "epochs": args.epochs, "batch": args.batch,
               "lr": args.lr, "heads": args.heads, "layers": args.layers}
    # Medusa's first head is given nothing after h: its accuracy is the target's own next-next-token guess.
    for kind, cls in (("hydra", Hydra), ("medusa", Medusa)):
        torch.manual_seed(SEED)
        heads = cls(E, V, args.heads, args.layers, lm_head)
        params = [p for p in heads.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
        steps = args.epochs * math.ceil(len(train_pos) / args.batch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps)))
        g = torch.Generator().manual_seed(SEED)
        t1 = time.time()
        step = 0
        for epoch in range(args.epochs):
            perm = train_pos[torch.randperm(len(train_pos), generator=g)]
            for k in range(0, len(perm), args.batch):
                pos = perm[k:k + args.batch]
                loss = 0.0
                for i in range(args.heads):
                    h, e = inputs(tok_t, hid_t, pos, i, embed)
                    loss = loss + F.cross_entropy(heads.head(i, h, e), lab_t[pos + i + 1])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if step % 50 == 0:
                    print(f"{kind} step {step}/{steps} loss {float(loss) / args.heads:.3f}", flush=True)
        round_f16(heads)
        acc = evaluate(heads, tok_h, hid_h, lab_h, held_pos, args.heads, embed)
        figures[kind] = {"train_seconds": round(time.time() - t1), "steps": steps, "final_loss": round(float(loss) / args.heads, 4),
                         "heldout_top1": [round(a, 4) for a in acc]}
        print(kind, figures[kind], flush=True)
        (export_hydra if kind == "hydra" else export_medusa)(heads, os.path.join(args.out, kind), args.heads, args.layers)
        figures[kind]["trainable_params"] = sum(p.numel() for p in params)
        figures[kind + "_module"] = heads
    make_reference(target, figures.pop("hydra_module"), figures.pop("medusa_module"), args, os.path.join(args.out, "reference.json"))
    for kind in ("hydra", "medusa"):
        d = os.path.join(args.out, kind)
        figures[kind]["files"] = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    json.dump(figures, open(os.path.join(ensure(os.path.join(WORK, "heads")), "figures.json"), "w"), indent=1)
    print(json.dumps(figures, indent=1))


REFERENCE_PROMPT = "    public static int max(int a, int b) {\n        return"


def make_reference(target, hydra, medusa, args, path):
    """For one prompt: the target's final hidden state at its last two positions, and every head's logits
    there (Hydra heads conditioned on the target's greedy token and fixed drafted tokens), 6 digits."""
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    ids = [sp.bos_id()] + sp.encode(REFERENCE_PROMPT)
    with torch.no_grad():
        h = final_hidden(target, torch.tensor([ids]))[0]
        logits = h @ target.tok_embd.weight.t()
        rows = []
        for pos in (len(ids) - 2, len(ids) - 1):
            root = int(logits[pos].argmax())
            drafted = [root, 17, 400, 1234][:args.heads + 1]
            entry = {"position": pos, "hidden": [float("%.7g" % v) for v in h[pos].tolist()], "tokens": drafted,
                     "hydra": [], "medusa": []}
            for i in range(args.heads):
                e = target.tok_embd(torch.tensor([drafted[:i + 1]]))
                entry["hydra"].append([float("%.6g" % v) for v in hydra.head(i, h[pos:pos + 1], e)[0].tolist()])
                entry["medusa"].append([float("%.6g" % v) for v in medusa.head(i, h[pos:pos + 1])[0].tolist()])
            rows.append(entry)
    json.dump({"description": "PyTorch fp32 reference for the demo heads: final hidden states of demo-target.gguf "
                              "(after the output norm) and each head's logits; Hydra head i reads tokens[0..i]",
               "prompt": REFERENCE_PROMPT, "tokens": ids, "rows": rows}, open(path, "w"), separators=(",", ":"))


if __name__ == "__main__":
    main()

"""Llama-architecture decoder, written to match llama.cpp's `llama` GGUF
conventions exactly (the Specula C engine implements the same math):

  x = tok_embd[token]
  per layer:  h = x + Wo . Attn(RMSNorm(x) * attn_norm)
              x = h + W_down(silu(W_gate n) * (W_up n)),  n = RMSNorm(h) * ffn_norm
  logits = W_out . (RMSNorm(x) * output_norm)      (W_out = tok_embd if tied)
  RMSNorm(x) = x / sqrt(mean(x^2) + eps), eps = 1e-5; no biases anywhere.
  RoPE "NORM" mode (GPT-J style): adjacent pairs (x[2i], x[2i+1]) of each head
  rotated by pos * theta^(-2i/head_dim), theta = 10000, applied to q and k.
  Attention: causal softmax(q.k / sqrt(head_dim)); GQA: query head h uses kv
  head h // (n_head / n_head_kv).
  Linear weights are [out_features, in_features] (nn.Linear layout).
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    name: str
    vocab_size: int = 4096
    d_model: int = 256
    n_layer: int = 6
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    ffn: int = 688
    ctx: int = 512
    eps: float = 1e-5
    rope_theta: float = 10000.0
    tied: bool = True

    def to_dict(self):
        return asdict(self)


CONFIGS = {
    "target": Config(name="specula-demo-target", d_model=256, n_layer=6, n_head=4, n_head_kv=2,
                     head_dim=64, ffn=688),
    "draft": Config(name="specula-demo-draft", d_model=128, n_layer=4, n_head=4, n_head_kv=2,
                    head_dim=32, ffn=384),
}


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg, T, device):
    inv = cfg.rope_theta ** (-torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]      # [T, hd/2]
    return ang.cos().float().to(device), ang.sin().float().to(device)


def apply_rope(x, cos, sin):
    # x: [B, H, T, hd]; adjacent pairs (2i, 2i+1)
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    r0 = x0 * cos - x1 * sin
    r1 = x0 * sin + x1 * cos
    return torch.stack((r0, r1), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.d_model, cfg.head_dim
        self.attn_norm = RMSNorm(d, cfg.eps)
        self.wq = nn.Linear(d, cfg.n_head * hd, bias=False)
        self.wk = nn.Linear(d, cfg.n_head_kv * hd, bias=False)
        self.wv = nn.Linear(d, cfg.n_head_kv * hd, bias=False)
        self.wo = nn.Linear(cfg.n_head * hd, d, bias=False)
        self.ffn_norm = RMSNorm(d, cfg.eps)
        self.w_gate = nn.Linear(d, cfg.ffn, bias=False)
        self.w_up = nn.Linear(d, cfg.ffn, bias=False)
        self.w_down = nn.Linear(cfg.ffn, d, bias=False)

    def forward(self, x, cos, sin, mask):
        cfg = self.cfg
        B, T, _ = x.shape
        n = self.attn_norm(x)
        q = self.wq(n).view(B, T, cfg.n_head, cfg.head_dim).transpose(1, 2)
        k = self.wk(n).view(B, T, cfg.n_head_kv, cfg.head_dim).transpose(1, 2)
        v = self.wv(n).view(B, T, cfg.n_head_kv, cfg.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        g = cfg.n_head // cfg.n_head_kv
        if g > 1:
            k = k.repeat_interleave(g, dim=1)   # query head h -> kv head h // g
            v = v.repeat_interleave(g, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(cfg.head_dim))
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, cfg.n_head * cfg.head_dim)
        h = x + self.wo(y)
        n = self.ffn_norm(h)
        return h + self.w_down(F.silu(self.w_gate(n)) * self.w_up(n))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_embd = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.output_norm = RMSNorm(cfg.d_model, cfg.eps)
        self.output = None if cfg.tied else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for b in self.blocks:   # scaled init of residual projections
            nn.init.normal_(b.wo.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
            nn.init.normal_(b.w_down.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def n_params(self):
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx):
        B, T = idx.shape
        cos, sin = rope_tables(self.cfg, T, idx.device)
        mask = torch.ones(T, T, dtype=torch.bool, device=idx.device).triu(1)
        x = self.tok_embd(idx)
        for b in self.blocks:
            x = b(x, cos, sin, mask)
        x = self.output_norm(x)
        w = self.tok_embd.weight if self.output is None else self.output.weight
        return x @ w.t()

    @torch.no_grad()
    def greedy(self, ids, n_new):
        ids = list(ids)
        for _ in range(n_new):
            ctx = ids[-self.cfg.ctx:]
            logits = self(torch.tensor([ctx], device=self.tok_embd.weight.device))[0, -1]
            ids.append(int(logits.argmax()))
        return ids[len(ids) - n_new:]

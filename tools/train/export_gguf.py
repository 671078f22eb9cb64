"""Step 5: export a checkpoint (final.pt, else latest.pt) to GGUF (llama arch).

  /usr/bin/python3 export_gguf.py --model target --out ../../models/demo-target.gguf [--f16]
"""
import argparse
import os

import sentencepiece as spm
import torch

from common import CKPT_DIR, TOK_PREFIX
from gguf_writer import (ARRAY, BOOL, F32, GGML_F16, GGML_F32, GGUFWriter, I32, STRING, U32)
from model import Config, Llama


def load_checkpoint(which, path=None):
    if path is None:
        d = os.path.join(CKPT_DIR, which)
        path = os.path.join(d, "final.pt")
        if not os.path.exists(path):
            path = os.path.join(d, "latest.pt")
    ck = torch.load(path, map_location="cpu")
    model = Llama(Config(**ck["cfg"]))
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck, path


def tokenizer_kv(w, sp):
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        else:
            types.append(1)
    w.add("tokenizer.ggml.model", STRING, "llama")
    w.add("tokenizer.ggml.tokens", ARRAY, tokens, STRING)
    w.add("tokenizer.ggml.scores", ARRAY, scores, F32)
    w.add("tokenizer.ggml.token_type", ARRAY, types, I32)
    w.add("tokenizer.ggml.bos_token_id", U32, sp.bos_id())
    w.add("tokenizer.ggml.eos_token_id", U32, sp.eos_id())
    w.add("tokenizer.ggml.unknown_token_id", U32, sp.unk_id())
    w.add("tokenizer.ggml.add_bos_token", BOOL, True)
    w.add("tokenizer.ggml.add_eos_token", BOOL, False)
    w.add("tokenizer.ggml.add_space_prefix", BOOL, False)


def export(model, out, name, f16=False):
    cfg = model.cfg
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    assert sp.get_piece_size() == cfg.vocab_size
    w = GGUFWriter(alignment=32)
    w.add("general.architecture", STRING, "llama")
    w.add("general.name", STRING, name)
    w.add("general.alignment", U32, 32)
    w.add("general.file_type", U32, 1 if f16 else 0)
    w.add("llama.context_length", U32, cfg.ctx)
    w.add("llama.embedding_length", U32, cfg.d_model)
    w.add("llama.block_count", U32, cfg.n_layer)
    w.add("llama.feed_forward_length", U32, cfg.ffn)
    w.add("llama.attention.head_count", U32, cfg.n_head)
    w.add("llama.attention.head_count_kv", U32, cfg.n_head_kv)
    w.add("llama.attention.key_length", U32, cfg.head_dim)
    w.add("llama.attention.value_length", U32, cfg.head_dim)
    w.add("llama.rope.freq_base", F32, float(cfg.rope_theta))
    w.add("llama.attention.layer_norm_rms_epsilon", F32, float(cfg.eps))
    w.add("llama.rope.dimension_count", U32, cfg.head_dim)
    w.add("llama.vocab_size", U32, cfg.vocab_size)
    tokenizer_kv(w, sp)
    mat = GGML_F16 if f16 else GGML_F32
    t = lambda p: p.detach().float().cpu().numpy()
    w.add_tensor("token_embd.weight", t(model.tok_embd.weight), mat)
    for i, b in enumerate(model.blocks):
        w.add_tensor(f"blk.{i}.attn_norm.weight", t(b.attn_norm.weight), GGML_F32)
        w.add_tensor(f"blk.{i}.attn_q.weight", t(b.wq.weight), mat)
        w.add_tensor(f"blk.{i}.attn_k.weight", t(b.wk.weight), mat)
        w.add_tensor(f"blk.{i}.attn_v.weight", t(b.wv.weight), mat)
        w.add_tensor(f"blk.{i}.attn_output.weight", t(b.wo.weight), mat)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", t(b.ffn_norm.weight), GGML_F32)
        w.add_tensor(f"blk.{i}.ffn_gate.weight", t(b.w_gate.weight), mat)
        w.add_tensor(f"blk.{i}.ffn_up.weight", t(b.w_up.weight), mat)
        w.add_tensor(f"blk.{i}.ffn_down.weight", t(b.w_down.weight), mat)
    w.add_tensor("output_norm.weight", t(model.output_norm.weight), GGML_F32)
    if model.output is not None:
        w.add_tensor("output.weight", t(model.output.weight), mat)
    w.write(out)
    print("wrote", out, os.path.getsize(out), "bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="draft|target")
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--f16", action="store_true")
    args = ap.parse_args()
    model, ck, path = load_checkpoint(args.model, args.ckpt)
    print("exporting", path, "step", ck["step"])
    export(model, args.out, model.cfg.name, args.f16)


if __name__ == "__main__":
    main()

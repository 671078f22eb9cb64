"""Step 7a: reference logits for engine parity tests (no PyTorch needed in CI).

  /usr/bin/python3 make_reference.py --model target --out ../../models/demo-target.reference.json

For each short Java prompt: token ids (BOS=1 first, then SentencePiece ids of
the text, which llama.cpp tokenizes identically) and the full fp32 logits of
the PyTorch forward (eval mode, whole prompt in one pass) at EVERY position,
rounded to 6 significant digits, plus the greedy continuation (16 tokens).
"""
import argparse
import json
import os

import sentencepiece as spm
import torch

from common import TOK_PREFIX
from export_gguf import load_checkpoint

PROMPTS = [
    "public static int max(int a, int b) {\n",
    "    /**\n     * Returns the hash code",
    "import java.util.List;\n\npublic class",
]
MAX_TOKENS = 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--gguf", default=None, help="file name recorded in the output")
    args = ap.parse_args()
    torch.set_num_threads(2)
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    model, ck, path = load_checkpoint(args.model)
    cfg = model.cfg
    out = {"description": "PyTorch fp32 reference logits of the Specula demo %s model; "
                          "logits[i] is the next-token distribution after tokens[0..i]. "
                          "tokens include BOS (id 1) first. Values rounded to 6 significant digits."
                          % args.model,
           "gguf": args.gguf or os.path.basename(args.out).replace(".reference.json", ".gguf"),
           "checkpoint_step": ck["step"], "vocab_size": cfg.vocab_size,
           "config": cfg.to_dict(), "tolerance_hint": 1e-3, "prompts": []}
    for text in PROMPTS:
        ids = [sp.bos_id()] + sp.encode(text)
        assert len(ids) <= MAX_TOKENS, (text, len(ids))
        assert sp.decode(ids[1:]) == text
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0].float()
            greedy = model.greedy(ids, 16)
        out["prompts"].append({
            "text": text, "tokens": ids,
            "pieces": [sp.id_to_piece(i) for i in ids],
            "greedy_continuation": greedy,
            "logits": [[float("%.6g" % v) for v in row.tolist()] for row in logits]})
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("wrote", args.out, os.path.getsize(args.out), "bytes;",
          [len(p["tokens"]) for p in out["prompts"]], "tokens")


if __name__ == "__main__":
    main()

"""Step 6: check a GGUF export against the PyTorch model with llama.cpp as oracle.

  /usr/bin/python3 verify_export.py --model target --gguf ../../models/demo-target.gguf

Checks (exit status 1 on failure):
  * llama.cpp tokenization == SentencePiece tokenization for every snippet;
  * llama.cpp greedy continuation (temperature 0, 1 thread) == PyTorch greedy
    continuation, both from [BOS] + prompt;
  * max |p_llama - p_torch| over the top-20 next-token probabilities after each
    prompt (reported; must be < 1e-3).
"""
import argparse
import json
import os
import subprocess
import sys

import sentencepiece as spm
import torch

from common import CORPUS_DIR, HERE, MODELS, TOK_PREFIX, WORK, ensure
from export_gguf import load_checkpoint

ORACLE_DIR = os.environ.get("SPECULA_ORACLE_DIR", "/root/.cache/specula/oracle")

SNIPPETS = [
    "public final class Point {\n    private final int x;\n    private final int y;\n",
    "    /**\n     * Returns the number of elements in this list.\n     *\n     * @return the number of elements in this list\n     */\n    public int size() {\n",
    "import java.util.ArrayList;\nimport java.util.List;\n\n",
    "        for (int i = 0; i < n; i++) {\n            if (a[i] == key) {\n",
    "    @Override\n    public String toString() {\n        return \"Pair[\" + first + \", \" + second + \"]\";\n    }\n",
    "\t\tString s = \"h\u00e9llo w\u00f6rld \u2603 \u4e2d\u6587\";  // non-ASCII 123456\n",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--n-gen", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(2)
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    model, ck, path = load_checkpoint(args.model)
    d = ensure(os.path.join(WORK, "verify"))
    req = os.path.join(d, args.model + ".req.json")
    resp = os.path.join(d, args.model + ".resp.json")
    # extra tokenization-only texts: the benchmark prompts (if present) and a few held-out files
    extra = []
    bench = os.path.join(MODELS, "demo-prompts.jsonl")
    if os.path.exists(bench):
        extra += [json.loads(l)["turns"][0] for l in open(bench, encoding="utf-8")]
    with open(os.path.join(CORPUS_DIR, "heldout.jsonl"), encoding="utf-8") as f:
        extra += [json.loads(l)["text"][:20000] for i, l in enumerate(f) if i % 10 == 0]
    with open(req, "w") as f:
        json.dump({"model": os.path.abspath(args.gguf), "oracle_dir": ORACLE_DIR, "n_gen": args.n_gen,
                   "ctx": model.cfg.ctx, "prompts": SNIPPETS, "tokenize_only": extra}, f)
    subprocess.run(["node", os.path.join(HERE, "verify_llamacpp.mjs"), req, resp], check=True)
    res = json.load(open(resp))
    ok = True
    worst = 0.0
    for r in res["results"]:
        ids = sp.encode(r["text"])
        tok_ok = ids == r["tokens"]
        with torch.no_grad():
            greedy = model.greedy([1] + ids, args.n_gen)
            probs = model(torch.tensor([[1] + ids]))[0, -1].softmax(-1)
        gen_ok = greedy == r["greedy"]
        dp = 0.0
        if r["last_probs"]:
            dp = max(abs(p - float(probs[t])) for t, p in r["last_probs"])
        worst = max(worst, dp)
        ok &= tok_ok and gen_ok and dp < 1e-3
        print("tokenize %s  greedy %s  max|dp| %.2e  %r" % ("OK " if tok_ok else "BAD", "OK " if gen_ok else "BAD",
                                                           dp, r["text"][:40]))
        if not tok_ok:
            print("   spm  ", ids, "\n   llama", r["tokens"])
        if not gen_ok:
            print("   torch", greedy, "\n   llama", r["greedy"])
    tok_bad = [i for i, (t, ids) in enumerate(zip(extra, res["tokenize_only"])) if sp.encode(t) != ids]
    print("tokenization of %d extra texts (%d chars): %s" % (len(extra), sum(map(len, extra)),
                                                            "OK" if not tok_bad else "MISMATCH at %s" % tok_bad))
    ok &= not tok_bad
    summary = {"model": args.model, "gguf": args.gguf, "checkpoint_step": ck["step"], "snippets": len(SNIPPETS),
               "n_gen": args.n_gen, "extra_tokenized_texts": len(extra),
               "extra_tokenized_chars": sum(map(len, extra)), "all_ok": bool(ok), "max_abs_prob_diff": worst}
    print(json.dumps(summary))
    with open(os.path.join(d, args.model + ".summary.json"), "w") as f:
        json.dump(summary, f)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

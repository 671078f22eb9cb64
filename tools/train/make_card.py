"""Step 8: write models/MODEL_CARD.md from measured artefacts only
(corpus stats, checkpoints' training logs, work/metrics/eval.json,
work/verify/*.summary.json, the files in models/)."""
import argparse
import hashlib
import json
import os

import sentencepiece as spm
import torch

from common import CKPT_DIR, CORPUS_DIR, MODELS, TOK_PREFIX, WORK
from model import CONFIGS, Config, Llama


def sha256(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def ckpt(which):
    p = os.path.join(CKPT_DIR, which, "final.pt")
    if not os.path.exists(p):
        p = os.path.join(CKPT_DIR, which, "latest.pt")
    return torch.load(p, map_location="cpu")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    stats = json.load(open(os.path.join(CORPUS_DIR, "stats.json")))
    tmeta = json.load(open(os.path.join(CORPUS_DIR, "train.meta.json")))
    hmeta = json.load(open(os.path.join(CORPUS_DIR, "heldout.meta.json")))
    ev = json.load(open(os.path.join(WORK, "metrics", "eval.json")))
    ver = {m: json.load(open(os.path.join(WORK, "verify", m + ".summary.json"))) for m in ("draft", "target")}
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    ck = {m: ckpt(m) for m in ("draft", "target")}
    jdk = dict(l.strip().split("=", 1) for l in open(os.path.join(
        os.path.dirname(os.path.dirname(stats["src_zip"])), "release")) if "=" in l)

    def arch_row(m):
        cfg = Config(**ck[m]["cfg"])
        n = Llama(cfg).n_params()
        return ("| %s | %d | %d | %d | %d / %d | %d | %d | %d | %s | %s |"
                % (m, n, cfg.d_model, cfg.n_layer, cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.ffn,
                   cfg.ctx, "tied" if cfg.tied else "separate", "%.0e" % cfg.eps))

    def train_row(m):
        c = ck[m]
        a, log = c["args"], c["log"]
        last = log[-1]
        tail = [r["loss"] for r in log[-5:]]
        cfg = Config(**c["cfg"])
        peak = a.get("lr") or (3e-3 if m == "draft" else 2e-3)
        p2 = a.get("phase2_steps", 0)
        steps = "%d" % c["step"] if not p2 else "%d (%d + %d)" % (c["step"], a["steps"], p2)
        lrs = "%g" % peak if not p2 else "%g, then %g" % (peak, a.get("phase2_lr") or peak / 2)
        return ("| %s | %s | %d x %d | %s | %.2f M | %.1f min | %.0f | %.3f |"
                % (m, steps, a["batch"], cfg.ctx, lrs,
                   last["tokens"] / 1e6, last["elapsed_s"] / 60, last["tokens"] / last["elapsed_s"],
                   sum(tail) / len(tail)))

    files = []
    for f in ("demo-target.gguf", "demo-draft.gguf", "demo-target.reference.json", "demo-prompts.jsonl"):
        p = os.path.join(MODELS, f)
        if os.path.exists(p):
            files.append("| `models/%s` | %d | `%s` |" % (f, os.path.getsize(p), sha256(p)))
    prompts = [json.loads(l) for l in open(os.path.join(MODELS, "demo-prompts.jsonl"))]
    cats = {}
    for p in prompts:
        cats[p["category"]] = cats.get(p["category"], 0) + 1
    g = ev["agreement_greedy"]
    tr = ck["target"]["args"]

    md = f"""# Specula demo models: `demo-target` and `demo-draft`

Two tiny Llama-architecture models trained from scratch on Java source code, for
demonstrating and testing Specula's speculative-decoding engine. They share one
tokenizer, so `demo-draft` can draft for `demo-target`. They are toys: they
produce plausible-looking Java, not correct programs. Every number below was
measured by the pipeline in `tools/train/` (see *Reproduce*).

## Files

| file | bytes | sha256 |
|---|---|---|
{chr(10).join(files)}

`demo-target.reference.json`: for {len(json.load(open(os.path.join(MODELS, "demo-target.reference.json")))["prompts"])} short Java prompts, the token ids (BOS first) and the
full fp32 PyTorch logits at every prompt position (6 significant digits) plus the
16-token greedy continuation, for engine parity tests without PyTorch.
`demo-prompts.jsonl`: {len(prompts)} Spec-Bench-format prompts ({", ".join("%s: %d" % kv for kv in cats.items())}) built from
held-out files only; each ends with a newline (natural token boundary).

## Corpus

* Source: `lib/src.zip` of {jdk.get("IMPLEMENTOR", "?").strip('"')} JDK {jdk.get("IMPLEMENTOR_VERSION", jdk.get("JAVA_VERSION", "?")).strip('"')},
  modules {", ".join("`%s`" % m for m in stats["modules"])} (`.java` files of at most {stats["max_file_bytes"]} bytes).
* The leading licence comment of each file (the identical GPLv2 + Classpath
  Exception header) is stripped before training; everything else is kept verbatim
  (CRLF normalised to LF).
* Split **by file**, deterministically: a file is held out iff the first byte of
  `sha1(path inside src.zip)` is < 8 (~3%).
  Train: {stats["train"]["files"]} files, {stats["train"]["chars"]:,} chars, {tmeta["tokens"]:,} tokens.
  Held-out: {stats["heldout"]["files"]} files, {stats["heldout"]["chars"]:,} chars, {hmeta["tokens"]:,} tokens.

### Licence

The training data is OpenJDK source code, licensed under the **GNU General Public
License version 2 with the Classpath Exception** (a few files carry other
compatible notices; see the JDK's `legal/` directory). The models are derived from
that code and can reproduce fragments of it (including the benchmark prompts,
which are verbatim excerpts of held-out JDK files); treat the weights and the
prompt file as covered by GPLv2 with the Classpath Exception.

## Tokenizer

SentencePiece BPE, vocab {sp.get_piece_size()}, trained on a ~12 M-char line sample of the
train split: `byte_fallback=True`, `remove_extra_whitespaces=False`,
`normalization_rule_name=identity`, `allow_whitespace_only_pieces=True`,
`add_dummy_prefix=False`, `split_digits=True`, `character_coverage=0.9999`;
ids: unk=0 `<unk>`, bos=1 `<s>`, eos=2 `</s>`, no pad; ids 3..258 are the byte
tokens `<0x00>`..`<0xFF>`. A newline is never part of a learned piece, so `\\n`
is always the byte token `<0x0A>`; runs of spaces are pieces of `▁`. In GGUF:
`tokenizer.ggml.model=llama`, pieces/scores/types copied from the SentencePiece
model (types: 1 normal, 2 unknown, 3 control, 6 byte), `add_bos_token=true`,
`add_eos_token=false`, `add_space_prefix=false`. llama.cpp's tokenization equals
SentencePiece's on all verification snippets (see below). Held-out compression:
{hmeta["chars"] / hmeta["tokens"]:.2f} chars/token (BOS per file included).

## Architecture

Llama (llama.cpp `llama` GGUF conventions), no biases, SwiGLU FFN, RMSNorm
eps 1e-5, RoPE theta 10000 in NORM (adjacent-pair, GPT-J) mode on q and k,
grouped-query attention (query head h uses KV head h // (n_head / n_head_kv)),
output projection tied to the token embedding (no `output.weight` tensor).
All tensors F32.

| model | params | d_model | layers | heads q / kv | head_dim | ffn | context | output | rms eps |
|---|---|---|---|---|---|---|---|---|---|
{arch_row("target")}
{arch_row("draft")}

## Training

PyTorch {torch.__version__} on CPU (2 cores shared with other builds, 1-2 threads, `nice -n 5`).
AdamW (beta 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only), linear
warm-up {tr["warmup"]} steps then cosine decay to 10% of the peak LR, gradient clipping 1.0,
seed {tr["seed"]}. The target then continues for a second phase of {tr.get("phase2_steps", 0)} steps (same
optimizer state): linear re-warm over 30 steps from 10% of the phase-1 peak to half
of it, then cosine decay to 10% of that. Both models: each step samples `batch` random windows of context+1 tokens from the
concatenated train stream (BOS before each file). Fixed step counts, chosen from
the measured throughput so both runs fit the time budget.

| model | steps | batch x ctx | peak LR | train tokens | logged training time | tok/s | final train loss (mean of last 5 logs, 10 steps each) |
|---|---|---|---|---|---|---|---|
{train_row("target")}
{train_row("draft")}

## Evaluation (held-out files, PyTorch fp32)

Next-token prediction on all {ev["heldout_tokens_scored"]:,} positions of the held-out stream, cut
into non-overlapping {ev["window"]}-token windows:

| model | top-1 accuracy | cross-entropy (nats/token) |
|---|---|---|
| target | {ev["target"]["top1"]:.4f} | {ev["target"]["loss"]:.4f} |
| draft | {ev["draft"]["top1"]:.4f} | {ev["draft"]["loss"]:.4f} |

Draft-target agreement:

* teacher-forced, same positions: argmax(draft) == argmax(target) on
  **{ev["agreement_teacher_forced"]:.4f}** of positions;
* on target greedy generations ({g["prompts"]} held-out prompts of {g["prompt_len"]} tokens, {g["gen_len"]} generated
  tokens each): the draft's argmax equals the target's token at
  **{g["token_agreement"]:.4f}** of positions; greedy speculative decoding with
  k=4 would accept {g["mean_accepted_per_round_k4"]:.2f} draft tokens per round on average.

## Export verification (llama.cpp as oracle)

`tools/train/verify_export.py` loads each GGUF with llama.cpp (node-llama-cpp
3.21.1 prebuilt CPU binaries, 1 thread) and compares with the PyTorch checkpoint on
{ver["target"]["snippets"]} Java snippets (incl. tabs and non-ASCII text): tokenization identical
(also on {ver["target"].get("extra_tokenized_texts", 0)} longer texts, {ver["target"].get("extra_tokenized_chars", 0):,} chars: the benchmark prompts and
every 10th held-out file),
{ver["target"]["n_gen"]}-token greedy continuation from `[BOS] + prompt` identical, and the
top-20 next-token probabilities after each prompt differ by at most
{ver["target"]["max_abs_prob_diff"]:.1e} (target) / {ver["draft"]["max_abs_prob_diff"]:.1e} (draft).
(llama.cpp keeps its KV cache in F16 by default, which likely accounts for these
small differences; the PyTorch reference is pure fp32.) Result: target {"PASS" if ver["target"]["all_ok"] else "FAIL"}, draft {"PASS" if ver["draft"]["all_ok"] else "FAIL"}.

## Reproduce

```sh
tools/train/train_all.sh   # defaults: DRAFT_STEPS={ck["draft"]["args"]["steps"]} TARGET_STEPS={tr["steps"]} TARGET_PHASE2_STEPS={tr.get("phase2_steps", 0)}
```

It installs the dependencies (`tools/train/setup.sh`: Debian `python3-torch`,
`python3-sentencepiece`, OpenBLAS-OpenMP as the BLAS/LAPACK alternative,
node-llama-cpp into `/root/.cache/specula/oracle`), then prepares the corpus,
trains tokenizer, draft and target, exports, verifies, evaluates and rewrites
this card. Intermediates go to `tools/train/work/` (git-ignored). Training is
seeded; bit-identical results on other hardware or thread counts are not
guaranteed. On a CUDA machine the same scripts use the GPU automatically.
"""
    notes = os.path.join(WORK, "notes.md")
    if os.path.exists(notes):
        md += "\n## Run notes (this training run)\n\n" + open(notes).read()
    with open(args.out, "w") as f:
        f.write(md)
    print("wrote", args.out)


if __name__ == "__main__":
    main()

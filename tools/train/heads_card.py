"""Writes the "Draft heads" section of models/MODEL_CARD.md from work/heads/figures.json (train_heads.py's
figures), replacing the section when it is already there.

  /usr/bin/python3 heads_card.py
"""
import hashlib
import json
import os

from common import MODELS, WORK

TITLE = "## Draft heads: `demo-heads/medusa` and `demo-heads/hydra`"


def section(f):
    rows = []
    for kind in ("medusa", "hydra"):
        d = os.path.join(MODELS, "demo-heads", kind)
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            rows.append("| `models/demo-heads/%s/%s` | %d | `%s` |" % (kind, name, os.path.getsize(p),
                                                                  hashlib.sha256(open(p, "rb").read()).hexdigest()))
    ref = os.path.join(MODELS, "demo-heads", "reference.json")
    rows.append("| `models/demo-heads/reference.json` | %d | `%s` |" % (os.path.getsize(ref), hashlib.sha256(open(ref, "rb").read()).hexdigest()))
    acc = lambda k: ", ".join("%.3f" % a for a in f[k]["heldout_top1"])
    return "\n".join([
        TITLE, "",
        "Two head sets that draft from `demo-target`'s own final hidden state (after its output norm), for",
        "`--drafter medusa` and `--drafter hydra` (layouts in the README's \"Draft heads\" section). Both have %d heads of"
        % f["heads"],
        "%d residual block(s); head i predicts the token i + 2 positions after the hidden state's (the target's LM head"
        % f["layers"],
        "predicts the next). Medusa heads read the hidden state alone; Hydra heads (the reference release's `mlp`",
        "heads, grounded) also read the embeddings of the token the target chose and of the tokens drafted before them.",
        "Each head's vocabulary projection is a frozen copy of the target's LM head (the tied embedding) and is not stored:",
        "Specula's heads then use the target's LM head. Trained tensors are stored as F16.", "",
        "| file | bytes | sha256 |", "|---|---|---|", *rows, "",
        "Training (`tools/train/train_heads.py`, seed %d, PyTorch on CPU, %d threads, `nice -n 10` on the shared 2-core"
        % (f["seed"], f["threads"]),
        "machine, load average 15-19 while it ran, so the times below are wall-clock under contention): %d fixed-seed windows of %d tokens from the train split (%d positions), one pass of the target over them"
        % (f["train_positions"] // (f["window"] - f["heads"] - 1), f["window"], f["train_positions"]),
        "for every position's final hidden state and the target's greedy next token (%d s), then per head set %d epochs of"
        % (f["hidden_seconds"], f["epochs"]),
        "AdamW (lr %g, 20-step warm-up, cosine to 0, batch %d positions), cross-entropy of every head against the target's"
        % (f["lr"], f["batch"]),
        "greedy token at its position (self-distillation), Hydra's inputs teacher-forced with the corpus tokens.", "",
        "| heads | trainable parameters | steps | training time | final loss | held-out top-1 per head (agreement with the target's greedy token) |",
        "|---|---|---|---|---|---|",
        *["| %s | %d | %d | %d s | %.3f | %s |" % (k, f[k]["trainable_params"], f[k]["steps"], f[k]["train_seconds"], f[k]["final_loss"], acc(k))
          for k in ("medusa", "hydra")], "",
        "Held-out: %d positions of %d windows of the held-out split. Hydra head i is scored with the corpus tokens as its"
        % (f["heldout_positions"], f["heldout_positions"] // (f["window"] - f["heads"] - 1)),
        "drafted prefix. `models/demo-heads/reference.json` holds the PyTorch final hidden states and every head's logits",
        "for one prompt; `DemoHeadsTest` keeps Specula's within 1e-4 of them.", ""])


def main():
    f = json.load(open(os.path.join(WORK, "heads", "figures.json")))
    card = os.path.join(MODELS, "MODEL_CARD.md")
    text = open(card, encoding="utf-8").read()
    new = section(f)
    if TITLE in text:
        start = text.index(TITLE)
        end = text.find("\n## ", start + len(TITLE))
        text = text[:start] + new + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + new
    open(card, "w", encoding="utf-8").write(text)
    print("wrote", card)


if __name__ == "__main__":
    main()

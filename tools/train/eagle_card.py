"""Writes the "EAGLE layer" section of models/MODEL_CARD.md from work/eagle/figures.json (train_eagle.py's figures),
replacing the section when it is already there.

  /usr/bin/python3 eagle_card.py [--load "load average 10-12"]
"""
import argparse
import hashlib
import json
import os

from common import MODELS, WORK

TITLE = "## EAGLE layer: `demo-heads/eagle`"


def section(f, load):
    rows = []
    files = [os.path.join("eagle", n) for n in sorted(os.listdir(os.path.join(MODELS, "demo-heads", "eagle")))] + ["eagle-reference.json"]
    for name in files:
        p = os.path.join(MODELS, "demo-heads", name)
        rows.append("| `models/demo-heads/%s` | %d | `%s` |" % (name, os.path.getsize(p), hashlib.sha256(open(p, "rb").read()).hexdigest()))
    h = f["heldout"]
    return "\n".join([
        TITLE, "",
        "An EAGLE-1 draft layer (arXiv 2401.15077) for `--drafter eagle`, in EAGLE's published layout (`config.json` and",
        "`model.safetensors`; the README's \"EAGLE draft layers\" section). Row t reads token x[t+1] with `demo-target`'s",
        "feature f[t] (its final hidden state after the output norm) as fc([embd(x[t+1]); f[t]]) + b, then one llama",
        "decoder layer of the target's width (4 heads of 64, 2 kv heads, FFN %d) without an input norm; its output" % f.get("ffn", 688),
        "predicts f[t+1], and the target's LM head (the tied embedding, not stored) turns it into logits. The embedding",
        "is the target's too. Tensors are stored as F16; %d trainable parameters." % f["trainable_params"], "",
        "| file | bytes | sha256 |", "|---|---|---|", *rows, "",
        "Training (`tools/train/train_eagle.py`, seed %d, PyTorch on CPU, %d thread%s, `nice -n 10` on the shared 2-core"
        % (f["seed"], f["threads"], "" if f["threads"] == 1 else "s"),
        "machine, %s while it ran, so the times are wall-clock under contention): %d fixed-seed windows of %d tokens"
        % (load, f["train_windows"], f["window"]),
        "from the train split, one pass of the target over them for every position's feature (%d s in the first run;" % f["feature_seconds"],
        "cached in `work/eagle/`, which later runs read), then AdamW (lr %g, 20-step warm-up, cosine over the %d steps the"
        % (f["lr"], f["schedule_steps"]),
        "first five steps' speed said would fit the time limit, %d windows per step) on EAGLE's loss, drafting unrolled" % f["batch_windows"],
        "over %d passes as EAGLE-3 trains (\"training-time test\": pass m reads the layer's own output of pass m-1 as its" % f["passes"],
        "feature and attends as a depth-m draft does, to the committed rows and its own draft ancestors): per pass,",
        "smooth-L1 between the output and f[t+1] plus %g x the cross-entropy of the LM head over the output against the" % f["cls_weight"],
        "target's distribution at t+1 (%s), pass m weighted %g^m, with uniform noise of +-0.1 on the input features."
        % ("every row" if not f["cls_rows"] else "%d sampled rows per step" % f["cls_rows"], f["pass_decay"]),
        "Training stops after a time limit: %d of %d planned steps ran in %d s%s."
        % (f["steps"], f["planned_steps"], f["train_seconds"], " (the limit was reached)" if f["stopped_at_time_limit"] else ""),
        "So the step count, and the weights, depend on how fast the machine was; the committed layer is this run's.", "",
        "| final smooth-L1 (pass 0) | final cross-entropy (pass 0) | held-out top-1, depth 1 | depth 2 | depth 3 |",
        "|---|---|---|---|---|",
        "| %.4f | %.3f | %.3f | %.3f | %.3f |" % (f["final_reg_loss"], f["final_cls_loss"], h["top1_depth1"], h["top1_depth2"], h["top1_depth3"]), "",
        "Held-out: %d windows of the held-out split; top-1 is agreement with the target's greedy token. Depth 1 is the" % f["heldout_windows"],
        "first draft after a verified step (it reads the target's features); depth m reads the layer's own predicted",
        "feature of depth m-1 and attends to the committed rows and its draft ancestors, as `EagleDraftPolicy` drafts.",
        "The layer this replaced (128 steps of one pass, 780 s at load 11-13) had 0.374 at depth 1 and 0.311 at depth 2",
        "on 10 held-out windows (that figure's depth 2 attended to rows built on the layer's own features only).",
        "`models/demo-heads/eagle-reference.json` holds the PyTorch outputs and logits for one prompt; `DemoEagleTest`",
        "keeps Specula's within 1e-4 of them.", ""])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", default="load average 10-13")
    args = ap.parse_args()
    f = json.load(open(os.path.join(WORK, "eagle", "figures.json")))
    card = os.path.join(MODELS, "MODEL_CARD.md")
    text = open(card, encoding="utf-8").read()
    new = section(f, args.load)
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

"""Encode train/held-out splits into flat uint16 token streams (BOS before every
file). Outputs work/corpus/{train,heldout}.u16 and *.meta.json (file offsets)."""
import json
import os

import numpy as np
import sentencepiece as spm

from common import CORPUS_DIR, TOK_PREFIX

BOS = 1


def main():
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    for split in ("train", "heldout"):
        docs = [json.loads(l) for l in open(os.path.join(CORPUS_DIR, split + ".jsonl"), encoding="utf-8")]
        ids = sp.encode([d["text"] for d in docs])
        offsets, out = [], []
        pos = 0
        for d, t in zip(docs, ids):
            offsets.append([d["path"], pos, len(t) + 1])
            out.append(np.array([BOS] + t, dtype=np.uint16))
            pos += len(t) + 1
        arr = np.concatenate(out)
        arr.tofile(os.path.join(CORPUS_DIR, split + ".u16"))
        chars = sum(len(d["text"]) for d in docs)
        with open(os.path.join(CORPUS_DIR, split + ".meta.json"), "w") as f:
            json.dump({"tokens": int(arr.size), "chars": chars, "files": offsets}, f)
        print(split, "files", len(docs), "tokens", arr.size, "chars/token %.3f" % (chars / arr.size))


if __name__ == "__main__":
    main()

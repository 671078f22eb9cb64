"""Step 2: SentencePiece BPE tokenizer (vocab 4096) trained on a sample of the
TRAIN split. SentencePiece reads its training input line by line, so '\\n' is
never a learned piece: at encode time it becomes the byte token <0x0A>
(byte_fallback), exactly as in llama.cpp's SPM tokenizer.
"""
import json
import os
import random

import sentencepiece as spm

from common import CORPUS_DIR, TOK_PREFIX, ensure

VOCAB = 4096
SAMPLE_CHARS = 12_000_000
SEED = 1234


def main():
    ensure(os.path.dirname(TOK_PREFIX))
    files = [json.loads(l) for l in open(os.path.join(CORPUS_DIR, "train.jsonl"), encoding="utf-8")]
    rng = random.Random(SEED)
    rng.shuffle(files)
    sample_path = TOK_PREFIX + ".sample.txt"
    n = 0
    with open(sample_path, "w", encoding="utf-8") as f:
        for d in files:
            if n >= SAMPLE_CHARS:
                break
            for line in d["text"].split("\n"):
                if line.strip():
                    f.write(line + "\n")
            n += len(d["text"])
    spm.SentencePieceTrainer.train(
        input=sample_path,
        model_prefix=TOK_PREFIX,
        model_type="bpe",
        vocab_size=VOCAB,
        byte_fallback=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        add_dummy_prefix=False,
        split_digits=True,
        character_coverage=0.9999,
        max_sentence_length=16384,
        input_sentence_size=3_000_000,
        shuffle_input_sentence=True,
        seed_sentencepiece_size=1_000_000,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=2,
        minloglevel=1,
    )
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    s = "    public static int max(int a, int b) {\n        return (a >= b) ? a : b;\n    }\n"
    ids = sp.encode(s)
    print("vocab", sp.get_piece_size(), "example:", [sp.id_to_piece(i) for i in ids])
    assert sp.decode(ids) == s, "round trip failed"


if __name__ == "__main__":
    main()

"""Shared paths and environment helpers for the demo-model pipeline."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
WORK = os.environ.get("SPECULA_TRAIN_WORK", os.path.join(HERE, "work"))
MODELS = os.environ.get("SPECULA_MODELS_DIR", os.path.join(REPO, "models"))
SRC_ZIP = os.environ.get("SPECULA_SRC_ZIP", "/usr/lib/jvm/temurin-25-jdk-amd64/lib/src.zip")

CORPUS_DIR = os.path.join(WORK, "corpus")
TOK_PREFIX = os.path.join(WORK, "tokenizer", "spm")  # spm.model / spm.vocab
CKPT_DIR = os.path.join(WORK, "ckpt")


def ensure(path):
    os.makedirs(path, exist_ok=True)
    return path

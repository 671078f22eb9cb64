#!/usr/bin/env bash
# End-to-end pipeline for Specula's demo models (draft + target, shared tokenizer).
#
#   tools/train/train_all.sh            # from the repository root (or anywhere)
#
# Environment knobs: DRAFT_STEPS (default 800), TARGET_STEPS (default 700),
# TARGET_PHASE2_STEPS (default 800; warm-restarted cosine after TARGET_STEPS),
# SPECULA_TRAIN_WORK (intermediates, default tools/train/work, git-ignored),
# SPECULA_ORACLE_DIR (node-llama-cpp install, default /root/.cache/specula/oracle),
# SKIP_SETUP=1 to skip apt/npm. Re-running resumes interrupted training from
# work/ckpt/<model>/latest.pt. Uses CUDA automatically when available.
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
DRAFT_STEPS=${DRAFT_STEPS:-800}
TARGET_STEPS=${TARGET_STEPS:-700}
TARGET_PHASE2_STEPS=${TARGET_PHASE2_STEPS:-800}
MODELS=../../models
# glibc malloc tuning: roughly doubles the CPU step rate of torch 1.13
export GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

[ "${SKIP_SETUP:-0}" = 1 ] || ./setup.sh
mkdir -p work/logs "$MODELS"
$PY prep_data.py
$PY train_tokenizer.py
$PY tokenize_corpus.py
nice -n 5 $PY train.py --model draft  --steps "$DRAFT_STEPS"  --batch 16 --resume 2>&1 | tee -a work/logs/draft.log
nice -n 5 $PY train.py --model target --steps "$TARGET_STEPS" --phase2-steps "$TARGET_PHASE2_STEPS" --batch 8 --ckpt-every 25 --resume 2>&1 | tee -a work/logs/target.log
$PY export_gguf.py --model draft  --out $MODELS/demo-draft.gguf
$PY export_gguf.py --model target --out $MODELS/demo-target.gguf
$PY verify_export.py --model draft  --gguf $MODELS/demo-draft.gguf
$PY verify_export.py --model target --gguf $MODELS/demo-target.gguf
nice -n 5 $PY evaluate.py
$PY make_reference.py --model target --out $MODELS/demo-target.reference.json
$PY make_prompts.py --out $MODELS/demo-prompts.jsonl
$PY make_card.py --out $MODELS/MODEL_CARD.md
nice -n 10 $PY train_heads.py 2>&1 | tee -a work/logs/heads.log
$PY heads_card.py
nice -n 10 $PY train_eagle.py 2>&1 | tee -a work/logs/eagle.log
$PY eagle_card.py
echo "all done"

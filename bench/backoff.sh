#!/usr/bin/env bash
# Issue 12, part 4: with the back-off on (the default), every drafter against plain decoding, side by side, on
#   (a) the demo prompts on the demo target,
#   (b) a random-weight model with a random draft model (drafts barely pay there),
#   (c) held-out prompts (bench/prompts/heldout.jsonl: other languages and prose, none in the demo prompts).
# Prints per category the speedup over plain decoding by wall clock (fastest of the rounds) and by CPU time.
# bench/backoff.sh [tokens=96] [rounds=2] [demo questions=16] [threads=1]
# SKIP_BUILD=1 skips the maven build; SPECULA_BENCH_MODELS (default /tmp/specula-backoff) holds the random models.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
tokens=${1:-96}
rounds=${2:-2}
limit=${3:-16}
threads=${4:-1}
[ -n "${SKIP_BUILD:-}" ] || (cd "$root" && mvn -q -B -DskipTests package)
models=${SPECULA_BENCH_MODELS:-/tmp/specula-backoff}
mkdir -p "$models"
# Random weights, one seed for both so they share a vocabulary (the draft model must have the target's tokenizer).
if [ ! -f "$models/random-target.gguf" ]; then
    "$root/specula" make-test-model --out "$models/random-target.gguf" --dim 512 --layers 8 --heads 8 --kv-heads 4 \
        --ff 1536 --vocab 4096 --context 2048 --type Q8_0 --seed 7
fi
if [ ! -f "$models/random-draft.gguf" ]; then
    "$root/specula" make-test-model --out "$models/random-draft.gguf" --dim 128 --layers 2 --heads 4 --kv-heads 2 \
        --ff 384 --vocab 4096 --context 2048 --type Q8_0 --seed 7
fi
bench() {
    nice -n 10 "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED ${JAVA_OPTS:-} -cp "$root/bench/target/benchmarks.jar" \
        dev.specula.bench.BackoffBench "$@"
}
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo; echo "(a) demo prompts, demo target"
bench "$root/models/demo-target.gguf" "$root/models/demo-draft.gguf" "$root/models/demo-prompts.jsonl" "$tokens" "$limit" "$rounds" "$threads"
echo; echo "(b) random-weight model (held-out prompts)"
bench "$models/random-target.gguf" "$models/random-draft.gguf" "$root/bench/prompts/heldout.jsonl" "$tokens" 0 "$rounds" "$threads"
echo; echo "(c) held-out prompts, demo target"
bench "$root/models/demo-target.gguf" "$root/models/demo-draft.gguf" "$root/bench/prompts/heldout.jsonl" "$tokens" 0 "$rounds" "$threads"
echo; echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Issue 12, part 4: with the back-off on (the default), every drafter against plain decoding, paired, on
#   (a) the demo prompts on the demo target (every drafter, the demo heads included),
#   (b) a random-weight model with a random draft model (drafts barely pay there; no heads fit it),
#   (c) held-out prompts (bench/prompts/heldout.jsonl: other languages and prose, none in the demo prompts).
# Each is `specula bench`: per round, every question answered by plain decoding and the drafter back to back in
# alternating order; per drafter and category the median ratio over rounds with a 95% bootstrap interval, by wall
# clock and by CPU time.
# bench/backoff.sh [tokens=128] [rounds=6] [demo questions=8] [threads=1]
# SKIP_BUILD=1 skips the maven build; SPECULA_BENCH_MODELS (default /tmp/specula-backoff) holds the random models.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
tokens=${1:-128}
rounds=${2:-6}
limit=${3:-8}
threads=${4:-1}
[ -n "${SKIP_BUILD:-}" ] || (cd "$root" && mvn -q -B -DskipTests -pl cli -am package)
models=${SPECULA_BENCH_MODELS:-/tmp/specula-backoff}
mkdir -p "$models"
specula() {
    nice -n 10 "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -Dspecula.home="$root" ${JAVA_OPTS:-} \
        -jar "$root/cli/target/specula-cli.jar" "$@"
}
# Random weights, one seed for both so they share a vocabulary (the draft model must have the target's tokenizer).
if [ ! -f "$models/random-target.gguf" ]; then
    specula make-test-model --out "$models/random-target.gguf" --dim 512 --layers 8 --heads 8 --kv-heads 4 \
        --ff 1536 --vocab 4096 --context 2048 --type Q8_0 --seed 7
fi
if [ ! -f "$models/random-draft.gguf" ]; then
    specula make-test-model --out "$models/random-draft.gguf" --dim 128 --layers 2 --heads 4 --kv-heads 2 \
        --ff 384 --vocab 4096 --context 2048 --type Q8_0 --seed 7
fi
common=(--max-tokens "$tokens" --rounds "$rounds" --threads "$threads")
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo; echo "(a) demo prompts, demo target"
specula bench --prompts "$root/models/demo-prompts.jsonl" --limit "$limit" --heads "$root/models/demo-heads" \
    --drafters pld,recycling,draft-model,early-exit,medusa,hydra,eagle "${common[@]}"
echo; echo "(b) random-weight model (held-out prompts)"
specula bench --model "$models/random-target.gguf" --draft-model "$models/random-draft.gguf" \
    --prompts "$root/bench/prompts/heldout.jsonl" --drafters pld,recycling,draft-model,early-exit "${common[@]}"
echo; echo "(c) held-out prompts, demo target"
specula bench --prompts "$root/bench/prompts/heldout.jsonl" --heads "$root/models/demo-heads" \
    --drafters pld,recycling,draft-model,early-exit,medusa,hydra,eagle "${common[@]}"
echo; echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Continuous batching on the 100M random model (issue 15's goals, not in CI): first the same 8 requests one at a time
# and all at once (the ratio is the goal: >= 2.5x), then speculation on against off per batch size, all at once only
# (the "drafting" column shows where the step cost model's back-off turns drafts off). Prints BatchThroughput's tables.
#   bench/batch-sweep.sh [--model FILE] [--max-tokens 64] [--sizes 1,2,4,8,16] [--drafters none,pld,recycling] [--threads 2] [--rounds 3]
# (--model: another GGUF instead of the 100M random model, e.g. models/demo-target.gguf, where drafts pay; each figure is
# the median of --rounds interleaved runs, after an untimed warm-up of both ways)
# Run it niced on a shared machine: nice -n 10 bench/batch-sweep.sh
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
max_tokens=64 sizes=1,2,4,8,16 drafters=none,pld,recycling threads=2 rounds=3 model=(--random 100m)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model=(--model "$2"); shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --drafters) drafters=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "${SPECULA_SKIP_BUILD:-0}" == 1 ]] || (cd "$root" && mvn -q -B -DskipTests -pl bench -am package)
cd "$root"
run() { "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -Dspecula.home="$root" -cp "$root/bench/target/benchmarks.jar" \
  dev.specula.bench.BatchThroughput "${model[@]}" --max-tokens "$max_tokens" --threads "$threads" --rounds "$rounds" "$@"; }
echo "== 8 requests, one at a time against all at once"
run --requests 8 --drafters "$drafters"
for n in ${sizes//,/ }; do
  echo "== batch $n, all at once"
  run --requests "$n" --drafters "$drafters" --alone false
done

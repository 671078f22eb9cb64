#!/usr/bin/env bash
# The speculation machinery apart from drafter quality: an oracle drafter of chosen acceptance alpha (SYNTHETIC)
# through the real decode loop, speedup over plain decoding next to E[L]/c(T), on the cpu backend.
# bench/oracle-drafter.sh [MODEL.gguf=/tmp/specula-1b-q8.gguf] [threads=1] [tokens=64] [prompts=3]
# A MODEL that does not exist is written first (random 1B Q8_0). Options as system properties in JAVA_OPTS,
# e.g. JAVA_OPTS="-Dspecula.bench.trees=5,9 -Dspecula.bench.siblings=1" for trees (see OracleDrafterBench).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
model=${1:-/tmp/specula-1b-q8.gguf}
(cd "$root" && mvn -q -B -DskipTests package)
# weights copied onto huge pages, the file read once: the speed then does not depend on how the page cache holds it
export SPECULA_CPU_WEIGHTS=${SPECULA_CPU_WEIGHTS:-copy}
[ -f "$model" ] && cat "$model" > /dev/null
# shellcheck disable=SC2086
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED ${JAVA_OPTS:-} -cp "$root/bench/target/benchmarks.jar" \
    dev.specula.bench.OracleDrafterBench "$model" "${2:-1}" "${3:-64}" "${4:-3}"

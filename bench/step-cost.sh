#!/usr/bin/env bash
# Verify-step cost against tree size on the cpu backend: bench/step-cost.sh MODEL.gguf [threads] [prefix] [reps]
# llama.cpp on the same file and threads beside it (the oracle, installed here if npm is there).
# JAVA_OPTS: -Dspecula.bench.maxTokens=16 -Dspecula.bench.stat=best -Dspecula.bench.llamacpp=false;
# SPECULA_BENCH_CLOCK=cpu times both by CPU time (see StepCostCurve).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
"$root/tools/oracle/install.sh" || true
(cd "$root" && mvn -q -B -DskipTests package)
# shellcheck disable=SC2086
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -Dspecula.home="$root" ${JAVA_OPTS:-} \
    -cp "$root/bench/target/benchmarks.jar" dev.specula.bench.StepCostCurve "$@"

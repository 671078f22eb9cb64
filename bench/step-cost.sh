#!/usr/bin/env bash
# Verify-step cost against tree size on the cpu backend: bench/step-cost.sh MODEL.gguf [threads] [prefix] [reps]
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
(cd "$root" && mvn -q -B -DskipTests package)
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -cp "$root/bench/target/benchmarks.jar" dev.specula.bench.StepCostCurve "$@"

#!/usr/bin/env bash
# Specula's cpu backend against llama.cpp (the npm CPU build) on the same random-weight GGUF files, one run,
# ratios printed. Arguments (all optional): sizes types threads promptTokens decodeTokens
#   bench/cpu-vs-llamacpp.sh 100m,1b F16,Q8_0 1,2 128 32
#   bench/cpu-vs-llamacpp.sh 100m,1b Q4_K_M,Q6_K,Q5_K_M 1 128 32   (any llama.cpp file type: Q4_K_M, Q5_K_M, Q3_K_M, Q6_K, ...)
# Models are made once in ~/.cache/specula/bench (the 1B F16 file is about 2 GB).
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
"$root/tools/oracle/install.sh"
(cd "$root" && mvn -q -B -DskipTests package)
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -Dspecula.home="$root" -Xmx2g \
  -cp "$root/bench/target/benchmarks.jar" dev.specula.bench.CpuVsLlamaCpp "$@"

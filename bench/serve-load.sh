#!/usr/bin/env bash
# Load test of `specula serve`'s server (not in CI): the demo target behind SpeculaServer on a loopback port, 64
# streaming clients, 2,000 requests (greedy and sampled, every 10th hung up after its first text), bounded by
# --max-seconds. Prints throughput, p50/p99 time to first token and inter-token latency, and the heap after GC and
# resident set between rounds of 500; exits 1 on any error or when memory grew past the allowance.
#   bench/serve-load.sh [--clients 64] [--requests 2000] [--max-tokens 32] [--batch 8] [--cancel-every 10] [--drafter NAME] ...
# Run it niced on a shared machine: nice -n 10 bench/serve-load.sh
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
(cd "$root" && mvn -q -B -DskipTests -pl bench -am package)
cd "$root"
# A fixed heap, touched at start-up, so the heap's part of the resident set is there from the first reading.
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -Xms256m -Xmx256m -XX:+AlwaysPreTouch \
  -Dspecula.home="$root" -cp "$root/bench/target/benchmarks.jar" dev.specula.bench.ServeLoad "$@"

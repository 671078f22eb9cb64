#!/usr/bin/env bash
# Soak benchmark (not in CI): 10,000 requests through one SpeculaEngine on the demo target, every drafter, 4 threads,
# with the resident set and native memory printed every 1,000 requests; exits 1 if memory grew or an answer differed.
#   bench/soak.sh [--requests N] [--threads N] [--every N] [--max-tokens N] [--max-growth-mib M] ...
# Run it niced on a shared machine: nice -n 10 bench/soak.sh
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
(cd "$root" && mvn -q -B -DskipTests -pl bench -am package)
cd "$root"
# A fixed heap, touched at start-up, so the Java heap's part of the resident set is there from the first reading and
# what grows after it is not the heap; NMT for the JVM's own native memory.
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -Xms256m -Xmx256m -XX:+AlwaysPreTouch -XX:NativeMemoryTracking=summary \
  -Dspecula.home="$root" -cp "$root/bench/target/benchmarks.jar" dev.specula.bench.SoakBenchmark "$@"

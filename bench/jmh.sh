#!/usr/bin/env bash
# Builds and runs the JMH benchmarks: bench/jmh.sh [JMH options, e.g. a benchmark regex]
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
source "$root/tools/jdk.sh"
specula_find_jdk
(cd "$root" && mvn -q -B -DskipTests package)
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -jar "$root/bench/target/benchmarks.jar" "$@"

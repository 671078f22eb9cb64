#!/usr/bin/env bash
# Packs what the GPU machine needs to run the Java parity driver (it has no Java) into .device-java/:
#
#   runtime.tar.xz   a jlink'd JDK 25 runtime with only the modules the driver needs (xz: the carry limit)
#   benchmarks.jar   the bench module's shaded jar (specula's classes and the libspecula.so built here, with
#                    cuda; cudart is static), less the native libraries of other platforms and DJL's tokenizer
#                    library (GGUF models carry their tokenizer; CudaParity loads no tokenizer.json)
#   bin/java         a launcher that unpacks the runtime on first use and adds --enable-native-access
#
# Run here, from anywhere in the repository:  bash bench/pack-device-java.sh [--rebuild]
# Builds with Maven first when the jar is missing or older than the sources (or with --rebuild), checks the
# runtime by running CudaParity --backends cpu,cpu on one prompt, and prints the folder's size. The GPU machine
# then gets it with the run tool's carry: [".device-java"], and bench/device-check.sh runs
#   .device-java/bin/java -cp .device-java/benchmarks.jar dev.specula.bench.CudaParity --backends cuda,cpu
set -euo pipefail
cd "$(dirname "$0")/.."
export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
OUT=.device-java
JAR=bench/target/benchmarks.jar

stale() {
    [[ ! -f $JAR ]] && return 0
    [[ -n $(find java/src/main bench/jmh/src native CMakeLists.txt pom.xml java/pom.xml bench/pom.xml \
        -newer "$JAR" -type f -print -quit 2>/dev/null) ]]
}
if [[ ${1:-} == --rebuild ]] || stale; then
    echo "building with Maven (tests skipped)"
    PATH="$JAVA_HOME/bin:$PATH" mvn -q -DskipTests package
fi
if ! unzip -p "$JAR" dev/specula/nativeapi/linux-x86_64/libspecula.so | strings | grep -c cudaGetDeviceCount >/dev/null; then
    echo "warning: the libspecula.so in $JAR has no cuda backend (was nvcc found when it was built?)" >&2
fi

rm -rf "$OUT"
mkdir -p "$OUT/bin"
python3 - "$JAR" "$OUT/benchmarks.jar" <<'EOF'
import sys, zipfile
# Other platforms' native libraries, and DJL's tokenizer library (only Hugging Face tokenizer.json needs it).
drop = ("native/lib/", "com/sun/jna/aix", "com/sun/jna/darwin", "com/sun/jna/dragonfly", "com/sun/jna/freebsd",
        "com/sun/jna/linux-a", "com/sun/jna/linux-l", "com/sun/jna/linux-m", "com/sun/jna/linux-p", "com/sun/jna/linux-r",
        "com/sun/jna/linux-s", "com/sun/jna/linux-x86/", "com/sun/jna/openbsd", "com/sun/jna/sunos", "com/sun/jna/win32-")
with zipfile.ZipFile(sys.argv[1]) as src, zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
    for info in src.infolist():
        if not info.filename.startswith(drop):
            dst.writestr(info, src.read(info.filename))
EOF

# Modules: what jdeps finds in specula and gson, less java.desktop (only the bench command's chart draws with
# AWT), plus jdk.unsupported (sun.misc.Unsafe, which gson and JNA look for).
MODULES=$("$JAVA_HOME/bin/jdeps" --multi-release 25 --ignore-missing-deps --print-module-deps \
    java/target/specula.jar java/target/lib/gson-*.jar | tr ',' '\n' | grep -v '^java.desktop$' | tr '\n' ',')
MODULES=${MODULES}jdk.unsupported
echo "jlink modules: $MODULES"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Uncompressed modules: xz over the whole image packs far smaller than jlink's own zip.
"$JAVA_HOME/bin/jlink" --add-modules "$MODULES" --strip-debug --no-header-files --no-man-pages --compress=zip-0 \
    --output "$TMP/runtime"
tar -C "$TMP/runtime" -cf - . | xz -T0 -6 >"$OUT/runtime.tar.xz"

cat >"$OUT/bin/java" <<'EOF'
#!/usr/bin/env sh
# Unpacks the runtime beside this folder on first use, then runs it with native access allowed.
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$here/runtime/bin/java" ]; then
    rm -rf "$here/runtime.partial" && mkdir -p "$here/runtime.partial" || exit 1
    if command -v xz >/dev/null 2>&1; then
        xz -dc "$here/runtime.tar.xz" | tar -C "$here/runtime.partial" -xf - || exit 1
    else
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' \
            "$here/runtime.tar.xz" "$here/runtime.partial" || exit 1
    fi
    mv "$here/runtime.partial" "$here/runtime" || exit 1
fi
exec "$here/runtime/bin/java" --enable-native-access=ALL-UNNAMED "$@"
EOF
chmod +x "$OUT/bin/java"

# The runtime must run the driver: one prompt, one random model, cpu against cpu.
echo "checking the packed runtime (CudaParity --backends cpu,cpu, one prompt)"
if ! "$OUT/bin/java" -cp "$OUT/benchmarks.jar" dev.specula.bench.CudaParity --backends cpu,cpu --prompts 1 --max-tokens 8 \
    --random-prompts 1 --dtypes F16 >"$TMP/check.log" 2>&1; then
    tail -n 30 "$TMP/check.log"
    echo "the packed runtime failed its check" >&2
    exit 1
fi
tail -n 1 "$TMP/check.log"
rm -rf "$OUT/runtime"
du -sh "$OUT"
ls -l "$OUT" "$OUT/bin"

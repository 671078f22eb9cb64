#!/usr/bin/env bash
# The GPU machine's check of the native core (it has nvcc, cmake, PyTorch and compute-sanitizer,
# no Java). From the repository root, with the run tool's carry: [".device-java"] (made here by
# bench/pack-device-java.sh) for the Java parity step:
#
#   bash bench/device-check.sh
#
# configures and builds (cuda on), runs ctest (the cuda tests really run here), runs
# compute-sanitizer over the cuda tests on their small cases (SPECULA_TEST_QUICK=1): memcheck,
# racecheck and synccheck on the speculative kernels (test_cuda_kernels), the model
# (test_cuda_model) and, but for synccheck, the matmuls (test_cuda_matmul); memcheck on the
# buffers; one initcheck on the kernels,
# runs the Java parity driver (cuda against cpu: logits per dtype, greedy generation with every
# drafter, Token Recycling's speedup) when .device-java is there, then the benchmarks: the ~1B
# model (bench_model) and transformers' LlamaForCausalLM on the same weights (torch_llama.py), the
# matmul benchmark, the speculative kernels and their PyTorch side-by-side; a summary table last.
# Stays under about 8 minutes: every step has a timeout, and steps are skipped past a deadline.
# Environment: SPECULA_DEVICE_BUDGET=seconds (default 470) moves the deadline;
# SPECULA_DEVICE_RESERVE=seconds (default 150) is kept from the sanitizer runs for the parity
# check and the model benchmark: a sanitizer run is cut to end that long before the deadline, and
# skipped when less would be left to it;
# SPECULA_DEVICE_SKIP=name,prefix,... skips the steps whose names start with one of them
# (e.g. "sanitizer,bench-kernels" for a second run that only wants the model benchmark);
# SPECULA_DEVICE_BUILD=dir builds elsewhere than build/device.
# Logs: build/device/logs/.
set -u
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin:/usr/local/cuda/compute-sanitizer"

BUILD=${SPECULA_DEVICE_BUILD:-build/device}
LOGS=$BUILD/logs
WEIGHTS=${TMPDIR:-/tmp}/specula-bench-model
mkdir -p "$LOGS" "$WEIGHTS"
T0=$(date +%s)
DEADLINE=$((T0 + ${SPECULA_DEVICE_BUDGET:-470})) # the last step's timeout is cut to end by then
JOBS=$(nproc 2>/dev/null || echo 8)
SPECULA_DEVICE_SKIP=${SPECULA_DEVICE_SKIP:-}
SUMMARY=()

elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((DEADLINE - $(date +%s))); }
record() { SUMMARY+=("$(printf '| %-26s | %-8s | %6s | %s |' "$1" "$2" "$3" "$4")"); }

# step NAME TIMEOUT_S COMMAND...: runs COMMAND into $LOGS/NAME.log, records the outcome.
step() {
    local name=$1 limit=$2
    shift 2
    local skip
    for skip in ${SPECULA_DEVICE_SKIP//,/ }; do
        if [[ $name == "$skip"* ]]; then
            record "$name" skipped - "SPECULA_DEVICE_SKIP"
            return
        fi
    done
    local left
    left=$(left)
    if ((left <= 10)); then
        record "$name" skipped - "past the time budget"
        return
    fi
    ((limit > left)) && limit=$left
    echo "=== $name (limit ${limit}s)"
    local start=$(date +%s) rc
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    local secs=$(($(date +%s) - start)) result note=""
    case $rc in
        0) result=pass ;;
        77) result=skipped ;;
        124 | 137) result=TIMEOUT ;;
        *) result="FAIL($rc)" ;;
    esac
    tail -n 25 "$LOGS/$name.log"
    case $name in
        ctest) note=$(grep -E "tests passed|tests failed" "$LOGS/$name.log" | tail -1) ;;
        sanitizer-*) note=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" "$LOGS/$name.log" | tail -1) ;;
        java-parity) note=$(grep -E "^CudaParity:|^recycling on cuda" "$LOGS/$name.log" | tr '\n' ' ' | cut -c1-110) ;;
        bench-model) note=$(grep -E "^\| decode" "$LOGS/$name.log" | head -1 | tr -s ' ' | cut -c1-90) ;;
        bench-torch-llama) note=$(grep -E "^\| torch-eager decode|^compile: failed" "$LOGS/$name.log" | head -1 | tr -s ' ' | cut -c1-90) ;;
        bench-matmul) note=$(grep -E "^\| matmul" "$LOGS/$name.log" | head -1 | cut -c1-90) ;;
        bench-*) note=$(grep -E "^\| (tree_attention|step)" "$LOGS/$name.log" | head -1 | cut -c1-90) ;;
    esac
    record "$name" "$result" "$secs" "$note"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
step configure 120 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSPECULA_CUDA=ON
step build 300 cmake --build "$BUILD" -j "$JOBS"
step ctest 200 ctest --test-dir "$BUILD" --output-on-failure -j 4
# sanitize NAME LIMIT TOOL TEST: TEST's small cases under compute-sanitizer's TOOL, within the
# time left before the reserve (the tools slow kernels down ten- to a hundredfold).
RESERVE=${SPECULA_DEVICE_RESERVE:-150}
sanitize() {
    local name=$1 limit=$2 tool=$3 test=$4
    if [[ ! -x $BUILD/$test ]]; then
        record "$name" skipped - "no $test built"
        return
    fi
    local room=$(($(left) - RESERVE))
    if ((room <= 10)); then
        record "$name" skipped - "time kept for parity and benchmarks"
        return
    fi
    ((limit > room)) && limit=$room
    step "$name" "$limit" env SPECULA_TEST_QUICK=1 \
        compute-sanitizer --tool "$tool" --error-exitcode 3 "$BUILD/$test"
}
if command -v compute-sanitizer >/dev/null; then
    # memcheck of every test first, then the shared-memory and barrier checks, initcheck last:
    # whatever would run into the reserve is skipped, and the summary says so.
    sanitize sanitizer-memcheck 90 memcheck test_cuda_kernels
    sanitize sanitizer-buffers 30 memcheck test_cuda_buffers
    sanitize sanitizer-model 90 memcheck test_cuda_model
    sanitize sanitizer-matmul-memcheck 60 memcheck test_cuda_matmul
    sanitize sanitizer-racecheck 90 racecheck test_cuda_kernels
    sanitize sanitizer-matmul-racecheck 60 racecheck test_cuda_matmul
    sanitize sanitizer-model-racecheck 90 racecheck test_cuda_model
    sanitize sanitizer-synccheck 60 synccheck test_cuda_kernels
    sanitize sanitizer-model-synccheck 60 synccheck test_cuda_model
    sanitize sanitizer-initcheck 60 initcheck test_cuda_kernels
else
    record sanitizer skipped - "compute-sanitizer not found"
fi

# Parity before the benchmarks: it is what must pass. The jar carries the libspecula.so built where it was packed.
if [[ -x .device-java/bin/java ]]; then
    step java-parity 180 .device-java/bin/java -cp .device-java/benchmarks.jar dev.specula.bench.CudaParity --backends cuda,cpu
else
    record java-parity skipped - "no .device-java (bench/pack-device-java.sh, then carry it)"
fi

rm -f "$WEIGHTS"/* # nothing of an earlier run may stand in for this one
step bench-model 150 "$BUILD/bench_model" --out-dir "$WEIGHTS" --cpu-check
if ! python3 -c "import torch, transformers" 2>/dev/null; then
    record bench-torch-llama skipped - "no PyTorch or transformers"
elif [[ ! -f $WEIGHTS/reference.json ]]; then
    record bench-torch-llama skipped - "bench_model wrote no weights"
else
    # torch.compile gets what is left after about a minute for loading and the eager rows.
    compile_s=$(($(left) - 90))
    ((compile_s > 150)) && compile_s=150
    compile_args=(--compile-timeout "$compile_s")
    ((compile_s < 30)) && compile_args=(--no-compile)
    step bench-torch-llama 300 python3 bench/native/torch_llama.py "$WEIGHTS" "${compile_args[@]}"
fi
rm -f "$WEIGHTS/model.safetensors"
if [[ -x $BUILD/bench_matmul ]]; then
    step bench-matmul 90 "$BUILD/bench_matmul" --quick
else
    record bench-matmul skipped - "no bench_matmul built"
fi
step bench-kernels 120 "$BUILD/bench_kernels" --quick
if python3 -c "import torch" 2>/dev/null; then
    step bench-torch-kernels 120 python3 bench/native/torch_kernels.py
else
    record bench-torch-kernels skipped - "no PyTorch"
fi

echo
echo "=== parity (java-parity)"
grep -hE "^\| (model|llama|qwen2|demo-target \| (none|recycling))|^(recycling on|CudaParity:|FAILED|WARNING)" \
    "$LOGS/java-parity.log" 2>/dev/null
echo
echo "=== model benchmark (specula, then torch on the same weights)"
grep -hE "^(model|bandwidth|floor|cpu check|device|logits|compile):|^\| (row|decode|step|torch-)" \
    "$LOGS/bench-model.log" "$LOGS/bench-torch-llama.log" 2>/dev/null
echo
echo "=== kernel benchmarks (matmul, speculative kernels, torch)"
grep -hE "^\||^peak" "$LOGS/bench-matmul.log" "$LOGS/bench-kernels.log" "$LOGS/bench-torch-kernels.log" 2>/dev/null
echo
echo "=== summary ($(elapsed)s in all; logs in $LOGS)"
printf '| %-26s | %-8s | %6s | %s |\n' step result secs note
printf '|%s|%s|%s|%s|\n' "----------------------------" "----------" "--------" "------"
for line in "${SUMMARY[@]}"; do echo "$line"; done

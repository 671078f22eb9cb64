#!/usr/bin/env bash
# The GPU machine's check of the native core (it has nvcc, cmake, PyTorch and compute-sanitizer,
# no Java). From the repository root:
#
#   bash bench/device-check.sh
#
# configures and builds (cuda on), runs ctest (the cuda tests really run here), runs
# compute-sanitizer (memcheck, racecheck, synccheck) over the cuda tests on their small cases,
# runs the kernel benchmark and the PyTorch side-by-side, and prints a summary table last.
# Stays under 8 minutes: every step has a timeout, and steps are skipped past a deadline.
# Logs: build/device/logs/.
set -u
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin:/usr/local/cuda/compute-sanitizer"

BUILD=build/device
LOGS=$BUILD/logs
mkdir -p "$LOGS"
T0=$(date +%s)
DEADLINE=$((T0 + 450)) # leave room under the 8 minutes for the last step's timeout
JOBS=$(nproc 2>/dev/null || echo 8)
SUMMARY=()

elapsed() { echo $(($(date +%s) - T0)); }

# step NAME TIMEOUT_S COMMAND...: runs COMMAND into $LOGS/NAME.log, records the outcome.
step() {
    local name=$1 limit=$2
    shift 2
    local now left
    now=$(date +%s)
    left=$((DEADLINE - now))
    if ((left <= 10)); then
        SUMMARY+=("$(printf '| %-24s | %-8s | %6s | %s |' "$name" "skipped" "-" "past the time budget")")
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
        bench-*) note=$(grep -E "^\| (tree_attention|step)" "$LOGS/$name.log" | head -1 | cut -c1-90) ;;
    esac
    SUMMARY+=("$(printf '| %-24s | %-8s | %6s | %s |' "$name" "$result" "$secs" "$note")")
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
step configure 120 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSPECULA_CUDA=ON
step build 300 cmake --build "$BUILD" -j "$JOBS"
step ctest 200 ctest --test-dir "$BUILD" --output-on-failure
if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck synccheck; do
        step "sanitizer-$tool" 120 env SPECULA_TEST_QUICK=1 \
            compute-sanitizer --tool "$tool" --error-exitcode 3 "$BUILD/test_cuda_kernels"
    done
    step sanitizer-buffers 60 compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/test_cuda_buffers"
else
    SUMMARY+=("$(printf '| %-24s | %-8s | %6s | %s |' "sanitizer" "skipped" "-" "compute-sanitizer not found")")
fi
step bench-specula 150 "$BUILD/bench_kernels"
if python3 -c "import torch" 2>/dev/null; then
    step bench-torch 150 python3 bench/native/torch_kernels.py
else
    SUMMARY+=("$(printf '| %-24s | %-8s | %6s | %s |' "bench-torch" "skipped" "-" "no PyTorch")")
fi

echo
echo "=== benchmark rows (specula, then torch)"
grep -hE "^\||^peak" "$LOGS/bench-specula.log" "$LOGS/bench-torch.log" 2>/dev/null
echo
echo "=== summary ($(elapsed)s in all; logs in $LOGS)"
printf '| %-24s | %-8s | %6s | %s |\n' step result secs note
printf '|%s|%s|%s|%s|\n' "--------------------------" "----------" "--------" "------"
for line in "${SUMMARY[@]}"; do echo "$line"; done

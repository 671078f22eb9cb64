#!/usr/bin/env bash
# The native library and its tests (cpu backend) built with AddressSanitizer and UndefinedBehaviorSanitizer
# in their own folder, build/asan, and run under ctest: any out-of-bounds access, use after free, leak or
# undefined behaviour fails the run. ./run-tests runs it before maven; on its own:
#   tools/sanitize-tests.sh [ctest arguments, e.g. -R test_forward]
# -O1 keeps the build and the run short on small machines.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
build=${SPECULA_SANITIZE_BUILD_DIR:-$root/build/asan}
jobs=${SPECULA_BUILD_JOBS:-$(nproc)}

mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DSPECULA_CUDA=OFF -DSPECULA_SANITIZE=ON >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; exit 1; }
cmake --build "$build" --parallel "$jobs"

# Leaks are findings too; a report names the stack that allocated.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec ctest --test-dir "$build" --output-on-failure "$@"

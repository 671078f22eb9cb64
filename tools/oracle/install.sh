#!/usr/bin/env bash
# Installs llama.cpp's prebuilt CPU library (through node-llama-cpp, from npm) into a cache folder
# outside the repository: the test oracle and the CPU speed peer. Idempotent. Never committed.
#   SPECULA_ORACLE_DIR  where to install (default ~/.cache/specula/oracle)
set -euo pipefail
dir=${SPECULA_ORACLE_DIR:-$HOME/.cache/specula/oracle}
version=3.21.1
marker="$dir/node_modules/@node-llama-cpp/linux-x64/package.json"
if [[ -f "$marker" ]] && grep -q "\"version\": \"$version\"" "$marker"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "oracle: npm not found; tests that compare with llama.cpp will be skipped" >&2
  exit 0
fi
mkdir -p "$dir"
echo "oracle: installing node-llama-cpp@$version (llama.cpp CPU build) into $dir" >&2
# --omit=optional keeps out ~700 MB of GPU builds; --ignore-scripts skips its build-from-source step.
(cd "$dir" && npm install --silent --no-audit --no-fund --ignore-scripts --omit=optional \
   "node-llama-cpp@$version" "@node-llama-cpp/linux-x64@$version" >&2)

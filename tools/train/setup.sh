#!/usr/bin/env bash
# Idempotent environment setup for the Specula demo-model training pipeline.
# Installs CPU PyTorch 1.13 + SentencePiece from Debian, switches BLAS/LAPACK to
# OpenBLAS (OpenMP) (the reference BLAS is ~25x slower), and installs the
# llama.cpp oracle (node-llama-cpp) into a cache folder OUTSIDE the repository.
set -euo pipefail

need_apt=0
/usr/bin/python3 -c 'import torch, sentencepiece, numpy' 2>/dev/null || need_apt=1
dpkg -s libopenblas0-openmp >/dev/null 2>&1 || need_apt=1
if [ "$need_apt" = 1 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y python3-torch python3-sentencepiece libopenblas0-openmp
fi

arch_dir=/usr/lib/x86_64-linux-gnu
for lib in libblas.so.3 liblapack.so.3; do
  alt="${lib}-x86_64-linux-gnu"
  target="$arch_dir/openblas-openmp/$lib"
  if update-alternatives --list "$alt" 2>/dev/null | grep -qx "$target"; then
    update-alternatives --set "$alt" "$target"
  else
    echo "warning: $target is not an alternative for $alt" >&2
  fi
done

ORACLE_DIR="${SPECULA_ORACLE_DIR:-/root/.cache/specula/oracle}"
if [ ! -d "$ORACLE_DIR/node_modules/node-llama-cpp" ] || [ ! -d "$ORACLE_DIR/node_modules/@node-llama-cpp/linux-x64" ]; then
  mkdir -p "$ORACLE_DIR"
  (cd "$ORACLE_DIR" && npm install --ignore-scripts --omit=optional \
      node-llama-cpp@3.21.1 @node-llama-cpp/linux-x64@3.21.1)
fi
echo "setup ok"

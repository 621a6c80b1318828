#!/usr/bin/env bash
# install-deps.sh: installs the Debian packages nibble needs, only those that are missing
# (idempotent). Used by both README commands. Optional extras: --extras adds what the tests use
# when present (clang for fuzzing, python3-torch/h5py for cross-checks, OpenBLAS for benchmarks).
set -euo pipefail
need=(gcc meson ninja-build pkg-config libhdf5-dev check libyaml-dev)
if [[ "${1:-}" == "--extras" ]]; then
  need+=(clang libclang-rt-dev python3-h5py python3-numpy libopenblas-dev valgrind)
fi
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "nibble: installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# llama.cpp for the GGUF cross-check: the npm package node-llama-cpp (prebuilt CPU binaries), only
# when npm is present; the test that uses it is skipped otherwise.
if [[ "${1:-}" == "--extras" ]] && command -v npm >/dev/null && [[ ! -d $HOME/.cache/nibble-npm/node_modules/node-llama-cpp ]]; then
  echo "nibble: installing node-llama-cpp into ~/.cache/nibble-npm (GGUF cross-check)"
  (mkdir -p "$HOME/.cache/nibble-npm" && cd "$HOME/.cache/nibble-npm" && { [[ -f package.json ]] || npm init -y >/dev/null; } \
     && npm install --no-audit --no-fund node-llama-cpp >/dev/null 2>&1) || echo "nibble: node-llama-cpp not installed (GGUF test will be skipped)"
fi

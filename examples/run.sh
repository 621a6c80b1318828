#!/usr/bin/env bash
# run.sh: the README's main command. Installs what is missing, builds nibble with meson into
# build/, then trains the default recipe (character-level Tiny Shakespeare, a few minutes on CPU)
# and prints a sample. Extra arguments go to `nibble train` (e.g. steps=200 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
if [[ -f build/build.ninja ]]; then
  meson setup --reconfigure build -Dbuildtype=release >/dev/null
else
  meson setup build -Dbuildtype=release >/dev/null
fi
ninja -C build nibble
./build/nibble train examples/recipes/shakespeare.yaml "$@"
./build/nibble plot runs/shakespeare -o runs/shakespeare/loss.png

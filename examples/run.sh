#!/usr/bin/env bash
# run.sh: the README's main command. Installs what is missing, builds nibble with meson into
# build/, trains the default recipe (character-level Tiny Shakespeare: fp32, then QAT with int4 g32
# weights + int8 per-token activations for the last quarter; a few minutes on 2 cores), exports it
# to nibble's packed int4 format, evaluates checkpoint and export side by side on the validation
# split, checks the export against the trained model (nibble verify), samples from the export with
# the integer runtime, and prints the file sizes. Extra arguments go to `nibble train` as recipe
# overrides (e.g. steps=300 quant.start_step=200 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
if [[ -f build/build.ninja ]]; then
  meson setup --reconfigure build -Dbuildtype=release >/dev/null
else
  meson setup build -Dbuildtype=release >/dev/null
fi
ninja -C build nibble
start=$SECONDS
run=runs/shakespeare
./build/nibble train examples/recipes/shakespeare.yaml "$@"
./build/nibble plot "$run" -o "$run/loss.png"
data=$(ls -t "$run"/tinyshakespeare.*.tokens.h5 | head -n 1)   # the prepared dataset (val split)

echo; echo "== export (int4 groups of 32, exactly the trained grid)"
./build/nibble export "$run/latest.h5" --format nibble -o "$run/model.int4.h5"
echo; echo "== evaluation on the validation split: QAT checkpoint (fake-quant), same weights in fp32, int4 export"
./build/nibble eval "$run/latest.h5" "$run/model.int4.h5" --data "$data"
./build/nibble eval "$run/latest.h5" --fp32 --data "$data"
echo; echo "== verify: exported integer model vs the fake-quantized model it came from"
./build/nibble verify "$run/latest.h5" "$run/model.int4.h5" --data "$data" --max-windows 200
echo; echo "== sample from the int4 export (integer runtime)"
./build/nibble generate "$run/model.int4.h5" --prompt "ROMEO:" --tokens 300 --temperature 0.8 --seed 1
echo; echo "== files"
du -b "$run/latest.h5" "$run/model.int4.h5" | awk '{printf "%-40s %9.2f MB\n", $2, $1 / 1e6}'
echo "loss curve: $run/loss.png; metrics: $run/metrics.jsonl; total $((SECONDS - start)) s"

#!/usr/bin/env bash
# compare_qat.sh RECIPE [key=value ...]: the fair QAT-vs-PTQ comparison of a QAT recipe.
#   1. fp32: the same recipe with quant.enabled=false (same seed, data, steps, schedule)
#   2. PTQ:  that fp32 result through `nibble ptq` with the recipe's policy (round to nearest)
#   3. QAT:  the recipe as written
#   4. `nibble eval --compare FP32 PTQ QAT` on the recipe's validation text (data.val), printing
#      the table and the fraction of the PTQ gap QAT recovered.
# Runs go to OUT_DIR-fp32, OUT_DIR-ptq.h5 and OUT_DIR (the recipe's out_dir); key=value overrides
# apply to all three. Environment: NIBBLE (default: build/nibble, else nibble on PATH),
# PTQ_FLAGS (e.g. --mse), EVAL_DATA (default: the recipe's data.val, else the val split of the
# fp32 run's prepared .tokens.h5).
# Run from the project root:  examples/compare_qat.sh examples/recipes/stories260k_qat_int4.yaml
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit $(( $# < 1 ))
fi
R=$1
shift
NIBBLE=${NIBBLE:-$( [ -x build/nibble ] && echo build/nibble || echo nibble )}
cfg=$("$NIBBLE" train "$R" "$@" --print-config)
key() { printf '%s\n' "$cfg" | awk -v s="$1" -v k="$2" '
    /^[a-z_]+:$/ { sec = $1; sub(/:$/, "", sec); next }
    /^[a-z_]+:/ { sec = "" }
    { line = $0; ind = (line ~ /^ /); sub(/^ +/, "", line) }
    ((s == "" && !ind) || (s != "" && ind && sec == s)) && index(line, k ": ") == 1 {
        v = substr(line, length(k) + 3); gsub(/^"|"$/, "", v); print v; exit }'; }
OUT=$(key "" out_dir)
VAL=${EVAL_DATA:-$(key data val)}
t0=$(date +%s)
echo "== fp32: $R quant.enabled=false -> $OUT-fp32"
"$NIBBLE" train "$R" "$@" quant.enabled=false out_dir="$OUT-fp32" --quiet
t1=$(date +%s)
echo "== PTQ: $OUT-fp32/latest.h5 -> $OUT-ptq.h5"
"$NIBBLE" ptq "$OUT-fp32/latest.h5" --recipe "$R" "$@" -o "$OUT-ptq.h5" --quiet ${PTQ_FLAGS:-}
echo "== QAT: $R -> $OUT"
"$NIBBLE" train "$R" "$@" --quiet
t2=$(date +%s)
if [ -z "$VAL" ]; then # no data.val: the val split of the fp32 run's prepared dataset
    CACHE=$(key data cache_dir)
    VAL=$(ls -t "${CACHE:-$OUT-fp32}"/*.tokens.h5 2>/dev/null | head -1)
    [ -n "$VAL" ] || { echo "compare_qat.sh: no validation data found; set EVAL_DATA=FILE" >&2; exit 1; }
fi
echo "== eval on $VAL"
"$NIBBLE" eval --compare "$OUT-fp32/latest.h5" "$OUT-ptq.h5" "$OUT/latest.h5" --data "$VAL"
echo "wall: fp32 run $((t1 - t0)) s, QAT run $((t2 - t1)) s (PTQ included)"

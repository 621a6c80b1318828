#!/usr/bin/env bash
# test_bench.sh: `nibble bench train` runs full training steps of the tiny model (fp32 and QAT),
# prints the JSON keys compare_torch.sh reads, makes no heap allocation after the warm-up, and
# refuses bad arguments with exit 1 and a message.
set -euo pipefail
: "${NIBBLE:?NIBBLE must point at the nibble binary}"
fail() { echo "FAIL: $*"; exit 1; }
quants="none w4g32a8"
[ -n "${NB_SANITIZE:-}" ] && quants=w4g32a8 # sanitizers: one policy is enough
for q in $quants; do
    out=$("$NIBBLE" bench train --model tiny --quant "$q" --steps 1 --warmup 2 --threads 2 --json)
    echo "$out"
    for k in tokens_per_s step_ms gflops peak_rss_mb cpu_ms; do
        grep -q "\"$k\": [0-9]" <<<"$out" || fail "$q: key $k missing in $out"
    done
    grep -q '"arena_mallocs": 0,' <<<"$out" || fail "$q: the step allocated after the warm-up: $out"
    grep -q "\"quant\": \"$q\"" <<<"$out" || fail "$q: policy not echoed: $out"
done
# the text report has the per-phase breakdown and, with QAT, fake-quant ops
out=$("$NIBBLE" bench train --model tiny --quant w8 --steps 1 --warmup 1)
echo "$out"
grep -q "forward .* backward .* optimizer" <<<"$out" || fail "no phase breakdown"
grep -q "fakequant" <<<"$out" || fail "no fake-quant op in the w8 profile"
# bad arguments
for args in "--model huge" "--quant w3" "--steps 0" "--threads x"; do
    set +e
    err=$("$NIBBLE" bench train $args 2>&1 >/dev/null)
    rc=$?
    set -e
    [ $rc = 1 ] || fail "'$args' exited $rc, expected 1"
    grep -q "error" <<<"$err" || fail "'$args': no message: $err"
done
"$NIBBLE" bench nothing 2>/dev/null && fail "unknown benchmark accepted"
echo ok

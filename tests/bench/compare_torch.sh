#!/usr/bin/env bash
# compare_torch.sh: nibble vs PyTorch on the same training step, side by side.
#
#   tests/bench/compare_torch.sh [--nibble PATH] [--rounds R] [--steps N] [--models "tiny small"]
#                                [--quants "none w4g32a8"] [--threads T]
#
# For each model and policy it runs `nibble bench train` and tests/bench/torch_step.py alternately
# (A B A B ..., R rounds), nibble with T threads (default 2), PyTorch at its best setting on this
# machine (torch 1 thread + OpenBLAS 2 threads for small, OpenBLAS 1 for tiny; torch_step.py's
# defaults), then prints the median tokens/s of each side, the ratio nibble/torch, the peak RSS of
# each and nibble's QAT step / fp32 step. Without python3-torch the torch columns say "skipped".
# The machine load (uptime) is printed before and after: timings on a busy machine are noisy.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nibble=${NIBBLE:-$root/build/nibble}
rounds=3
steps=5
models="tiny small"
quants="none w4g32a8"
threads=2
py=/usr/bin/python3
[ -x "$py" ] || py=python3
while [ $# -gt 0 ]; do
    case "$1" in
    --nibble) nibble=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --quants) quants=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare_torch.sh: unknown argument '$1'" >&2; exit 1 ;;
    esac
done
if [ ! -x "$nibble" ]; then
    echo "compare_torch.sh: no nibble binary at $nibble (build first or pass --nibble)" >&2
    exit 1
fi
have_torch=1
if ! "$py" -c "import torch" 2>/dev/null; then
    have_torch=0
    echo "compare_torch.sh: python3-torch is not installed: skipping the PyTorch runs (nibble only)"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "load before: $(uptime)"
echo "nibble: $nibble --threads $threads; torch: tests/bench/torch_step.py best setting (torch 1 thread, OpenBLAS 2 small / 1 tiny)"
for m in $models; do
    for q in $quants; do
        for r in $(seq 1 "$rounds"); do
            "$nibble" bench train --model "$m" --quant "$q" --steps "$steps" --threads "$threads" --json \
                >>"$tmp/nb_${m}_$q" 2>>"$tmp/err" || echo "nibble $m $q failed: $(tail -1 "$tmp/err")" >&2
            if [ $have_torch = 1 ]; then
                "$py" "$here/torch_step.py" --model "$m" --quant "$q" --steps "$steps" --json \
                    >>"$tmp/pt_${m}_$q" 2>>"$tmp/err" || echo "torch $m $q failed: $(tail -1 "$tmp/err")" >&2
            fi
        done
    done
done
echo "load after:  $(uptime)"
"$py" - "$tmp" "$models" "$quants" "$have_torch" "$rounds" "$steps" <<'EOF'
import json, os, statistics, sys
tmp, models, quants, have_torch, rounds, steps = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4] == "1", sys.argv[5], sys.argv[6]
def load(name):
    p = os.path.join(tmp, name)
    if not os.path.exists(p):
        return []
    return [json.loads(l) for l in open(p) if l.strip().startswith("{")]
def med(rows, key):
    return statistics.median(r[key] for r in rows) if rows else float("nan")
print(f"\nmedians of {rounds} alternating rounds x {steps} timed steps (each run: median step after warm-up)")
hdr = f"{'model':6} {'quant':8} {'nibble tok/s':>12} {'torch tok/s':>12} {'ratio':>6} {'nibble ms':>10} {'torch ms':>9} {'CPU ratio':>9} {'nibble MB':>9} {'torch MB':>9} {'QAT/fp32':>8} {'(CPU)':>6}"
print(hdr)
print("-" * len(hdr))
for m in models:
    base = med(load(f"nb_{m}_none"), "step_ms")
    cbase = med(load(f"nb_{m}_none"), "cpu_ms")
    for q in quants:
        nb, pt = load(f"nb_{m}_{q}"), load(f"pt_{m}_{q}")
        nt, nm, nr = med(nb, "tokens_per_s"), med(nb, "step_ms"), med(nb, "peak_rss_mb")
        if have_torch and pt:
            tt, tm, tr = med(pt, "tokens_per_s"), med(pt, "step_ms"), med(pt, "peak_rss_mb")
            tts, tms, trs, rat = f"{tt:12.0f}", f"{tm:9.1f}", f"{tr:9.0f}", f"{nt / tt:6.2f}"
            crat = f"{med(pt, 'cpu_ms') / med(nb, 'cpu_ms'):9.2f}" if "cpu_ms" in pt[0] else f"{'-':>9}"
        else:
            tts, tms, trs, rat, crat = f"{'skipped':>12}", f"{'-':>9}", f"{'-':>9}", f"{'-':>6}", f"{'-':>9}"
        qf = f"{nm / base:8.2f}" if q != "none" and base == base else f"{'':8}"
        qc = f"{med(nb, 'cpu_ms') / cbase:6.2f}" if q != "none" and cbase == cbase else f"{'':6}"
        print(f"{m:6} {q:8} {nt:12.0f} {tts} {rat} {nm:10.1f} {tms} {crat} {nr:9.0f} {trs} {qf} {qc}")
print("ratio: nibble tokens/s / torch tokens/s (wall); CPU ratio: torch CPU ms / nibble CPU ms per step")
print("(all threads; the fairer figure when the machine is loaded); QAT/fp32: nibble step ms, and CPU ms")
EOF

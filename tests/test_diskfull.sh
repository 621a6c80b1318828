#!/usr/bin/env bash
# test_diskfull.sh: a checkpoint write that fails (disk full / write error) stops the run with exit 2
# and a message naming the checkpoint, and leaves the previous checkpoints intact (latest.h5 and
# ckpt-*.h5 still load, `resume` works once space is back). Two ways to fill the disk:
#  1. the fault hook NB_FAULT_WRITE_AFTER_BYTES=N (checkpoint writes fail with ENOSPC after N bytes
#     in all) -- runs everywhere;
#  2. a real tiny tmpfs (room for about three checkpoints) as out_dir (needs root and mount permission; skipped otherwise).
set -uo pipefail
NIBBLE=${NIBBLE:?path of the nibble binary}
ROOT=${NB_SOURCE_ROOT:?project root}
W=$(mktemp -d "${TMPDIR:-/tmp}/nb_diskfull.XXXXXX")
MNT=""
cleanup() { [[ -n $MNT ]] && umount "$MNT" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
[[ -n ${NB_KEEP:-} ]] && trap - EXIT
fail() { echo "FAIL: $*"; exit 1; }

head -c 30000 "$ROOT/examples/data/tinyshakespeare.txt" >"$W/text.txt"
cat >"$W/r.yaml" <<EOF
name: diskfull
out_dir: $W/run
seed: 3
threads: 1
steps: 12
eval_every: 0
log_every: 1
ckpt_every: 2
keep_last: 10
sample_tokens: 0
model:
  dim: 32
  n_layers: 1
  n_heads: 2
  seq_len: 16
data:
  train: $W/text.txt
  val_fraction: 0.1
  tokenizer: char
  batch_size: 2
optim:
  lr: 1.0e-3
EOF

# every checkpoint left in $1 loads; latest.h5 is one of them and at step $2
check_dir() {
    local dir=$1 want=$2 f n=0
    for f in "$dir"/ckpt-*.h5; do
        [[ -e $f ]] || continue
        "$NIBBLE" info "$f" >/dev/null 2>&1 || fail "$f does not load after the failed write"
        n=$((n + 1))
    done
    ((n > 0)) || fail "no checkpoint left in $dir: $(ls "$dir")"
    [[ -f $dir/latest.h5 ]] || fail "latest.h5 missing in $dir"
    "$NIBBLE" info "$dir/latest.h5" >/dev/null 2>&1 || fail "latest.h5 does not load"
    cmp -s "$dir/latest.h5" "$dir/ckpt-$want.h5" || fail "latest.h5 is not ckpt-$want.h5"
    ls "$dir" | grep -q '\.tmp-' && fail "temporary file left behind: $(ls "$dir")"
    return 0
}

# size of one checkpoint of this model
"$NIBBLE" train "$W/r.yaml" out_dir="$W/ref" steps=2 --quiet >/dev/null 2>&1 || fail "reference run failed"
SZ=$(stat -c %s "$W/ref/ckpt-2.h5")

# --- 1. fault hook: room for two checkpoints and a half --------------------------------------------
BUDGET=$((SZ * 5 / 2))
NB_FAULT_WRITE_AFTER_BYTES=$BUDGET "$NIBBLE" train "$W/r.yaml" --quiet >"$W/o1.txt" 2>"$W/e1.txt"; rc=$?
[[ $rc == 2 ]] || { cat "$W/e1.txt"; fail "fault hook: exit $rc, expected 2"; }
grep -q "checkpoint at step 6 failed" "$W/e1.txt" || { cat "$W/e1.txt"; fail "message does not name the step"; }
grep -q "No space left on device" "$W/e1.txt" || { cat "$W/e1.txt"; fail "message does not say why"; }
grep -q "ckpt-4.h5 kept" "$W/e1.txt" || { cat "$W/e1.txt"; fail "message does not name the kept checkpoint"; }
check_dir "$W/run" 4
[[ -e $W/run/ckpt-6.h5 ]] && fail "partial ckpt-6.h5 exists"
# space is back: resume from the kept checkpoint and finish
"$NIBBLE" train "$W/r.yaml" resume=true --quiet >/dev/null 2>"$W/e1r.txt" || { cat "$W/e1r.txt"; fail "resume after the failed write"; }
check_dir "$W/run" 12
echo "fault hook: ok (checkpoint $SZ bytes, budget $BUDGET)"

# --- 2. a real full disk: a tmpfs with room for about three checkpoints --------------------------------------------------------------
if [[ $(id -u) != 0 ]]; then echo "SKIP: tmpfs part needs root (fault-hook part passed)"; exit 0; fi
MNT=$W/mnt
mkdir -p "$MNT"
KB=$((SZ * 3 / 1024 + 128))
if ! mount -t tmpfs -o size=${KB}k tmpfs "$MNT" 2>/dev/null; then
    MNT=""
    echo "SKIP: cannot mount a tmpfs here (fault-hook part passed)"
    exit 0
fi
"$NIBBLE" train "$W/r.yaml" out_dir="$MNT/run" steps=200 ckpt_every=2 keep_last=1000 --quiet >"$W/o2.txt" 2>"$W/e2.txt"; rc=$?
[[ $rc == 2 ]] || { cat "$W/e2.txt"; ls -l "$MNT/run"; fail "tmpfs: exit $rc, expected 2"; }
grep -q "failed (previous checkpoint .*kept, run stopped)" "$W/e2.txt" || { cat "$W/e2.txt"; fail "tmpfs: message"; }
grep -q "No space left on device" "$W/e2.txt" || { cat "$W/e2.txt"; fail "tmpfs: message does not say why"; }
last=$(ls "$MNT/run" | sed -n 's/^ckpt-\([0-9]*\)\.h5$/\1/p' | sort -n | tail -1)
[[ -n $last ]] || fail "tmpfs: no checkpoint written"
check_dir "$MNT/run" "$last"
echo "tmpfs (${KB} KiB): ok (stopped after ckpt-$last)"
exit 0

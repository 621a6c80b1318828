#!/usr/bin/env bash
# test_nanguard.sh: the guards test_train_cli.sh does not cover. Uses the test hook
# NB_TEST_INJECT_NAN=k (poisons one gradient of tok_emb at step k+1).
#  - on_nan=skip with max_skips reached stops (exit 2) with a nan_stop metrics event naming the step
#    and the parameter; with room left it continues and the summary counts the skip;
#  - on_nan=stop: exit 2, the checkpoint of the last good state loads and is at the step before;
#  - a diverging learning rate is reported (warning on stderr + "diverging" metrics event).
set -uo pipefail
NIBBLE=${NIBBLE:?path of the nibble binary}
ROOT=${NB_SOURCE_ROOT:?project root}
W=$(mktemp -d "${TMPDIR:-/tmp}/nb_nanguard.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

head -c 30000 "$ROOT/examples/data/tinyshakespeare.txt" >"$W/t.txt"
cat >"$W/r.yaml" <<EOF
name: nanguard
out_dir: $W/run
seed: 5
threads: 1
steps: 8
eval_every: 0
log_every: 1
ckpt_every: 0
sample_tokens: 0
model:
  dim: 32
  n_layers: 1
  n_heads: 4
  seq_len: 32
data:
  train: $W/t.txt
  val_fraction: 0.1
  tokenizer: char
  batch_size: 4
optim:
  lr: 3.0e-3
EOF

# skip, max_skips=1 reached at once: stop
NB_TEST_INJECT_NAN=3 "$NIBBLE" train "$W/r.yaml" out_dir="$W/s1" on_nan=skip max_skips=1 --quiet >/dev/null 2>"$W/s1.txt"; rc=$?
[[ $rc == 2 ]] || { cat "$W/s1.txt"; fail "max_skips=1: exit $rc, expected 2"; }
grep -q "step 4: gradient of tok_emb is nan" "$W/s1.txt" || { cat "$W/s1.txt"; fail "max_skips: message does not name step/parameter"; }
grep -q "max_skips 1" "$W/s1.txt" || { cat "$W/s1.txt"; fail "max_skips: message does not name the limit"; }
grep -q '"event": "nan_stop"' "$W/s1/metrics.jsonl" || fail "max_skips: no nan_stop event"
# skip with room left: finishes, the skip is counted
NB_TEST_INJECT_NAN=3 "$NIBBLE" train "$W/r.yaml" out_dir="$W/s2" on_nan=skip max_skips=5 >"$W/s2.out" 2>"$W/s2.txt" \
    || { cat "$W/s2.txt"; fail "max_skips=5: run did not finish"; }
grep -q '"event": "nan_skip"' "$W/s2/metrics.jsonl" || fail "no nan_skip event"
grep -q "skipped (1 so far)" "$W/s2.txt" || { cat "$W/s2.txt"; fail "skip count not reported"; }
"$NIBBLE" info "$W/s2/latest.h5" >/dev/null 2>&1 || fail "final checkpoint after a skip does not load"

# stop: checkpoint of the last good state (step 3), loadable
NB_TEST_INJECT_NAN=3 "$NIBBLE" train "$W/r.yaml" out_dir="$W/st" on_nan=stop --quiet >/dev/null 2>"$W/st.txt"; rc=$?
[[ $rc == 2 ]] || { cat "$W/st.txt"; fail "on_nan=stop: exit $rc, expected 2"; }
grep -q "step 4: gradient of tok_emb is nan" "$W/st.txt" || { cat "$W/st.txt"; fail "stop message"; }
[[ -f $W/st/ckpt-3.h5 ]] || fail "on_nan=stop: no ckpt-3.h5 (last good state): $(ls "$W/st")"
"$NIBBLE" info "$W/st/ckpt-3.h5" >/dev/null 2>&1 || fail "last good checkpoint does not load"
[[ -e $W/st/ckpt-4.h5 ]] && fail "the poisoned step was saved"

# a diverging learning rate is reported
"$NIBBLE" train "$W/r.yaml" out_dir="$W/dv" steps=40 optim.lr=10 optim.grad_clip=0 schedule.warmup_steps=0 \
    --quiet >/dev/null 2>"$W/dv.txt" || { cat "$W/dv.txt"; fail "diverging run failed"; }
grep -q "training is diverging" "$W/dv.txt" || { cat "$W/dv.txt"; fail "divergence not reported"; }
grep -q '"event": "diverging"' "$W/dv/metrics.jsonl" || fail "no diverging metrics event"
echo "nan guard: ok"
exit 0

#!/usr/bin/env bash
# test_datafree_cli.sh: `nibble train` with distill.data_free on stories260K (int4 g32 QAT, tiny
# windows): the teacher writes generated.tokens.h5 in the run folder (progress on stderr), training
# reads it; the set is the same for 1 or 2 threads; an interrupted run resumes bit-exactly, reusing
# the set (or remaking the same one when it was deleted); data.train with data_free is refused at
# file:line.
set -uo pipefail
NIBBLE=${NIBBLE:?path of the nibble binary}
ROOT=${NB_SOURCE_ROOT:?project root}
PY=/usr/bin/python3
W=$(mktemp -d "${TMPDIR:-/tmp}/nb_datafree_cli.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

STEPS=6
HALF=3
head -c 4000 "$ROOT/examples/data/tinystories/train_sample_heldout.txt" >"$W/val.txt"
cat >"$W/r.yaml" <<EOF
name: datafree_tiny
out_dir: $W/a
seed: 11
threads: 2
steps: $STEPS
log_every: 1
ckpt_every: $HALF
model:
  init: llama2c:$ROOT/examples/data/stories260K/model.bin
  seq_len: 32
data:
  val: $W/val.txt
  tokenizer: llama2c:$ROOT/examples/data/stories260K/tok512.bin
  batch_size: 4
optim: {lr: 1.0e-3, min_lr: 1.0e-4, weight_decay: 0.0}
schedule: {kind: cosine, warmup_steps: 1}
quant:
  enabled: true
  weights:
    - {match: "*", bits: 4, granularity: group, group_size: 32, tail: short_group, estimator: lsq}
distill:
  enabled: true
  data_free: true
  alpha: 0.0
  temperature: 1.0
  gen_sequences: 8
  gen_greedy_tokens: 2
  gen_start: random
EOF
run() { # run OUT_PREFIX args...: nibble train, stdout/stderr to $W/OUT.{out,err}
  local o=$1
  shift
  "$NIBBLE" train "$W/r.yaml" "$@" >"$W/$o.out" 2>"$W/$o.err" || { cat "$W/$o.out" "$W/$o.err"; fail "train $* exited $?"; }
}
have_h5py=0
$PY -c "import h5py" 2>/dev/null && have_h5py=1

# --- a run: the set is generated, written in the run folder and trained on ----------------------------
run a
G=$W/a/generated.tokens.h5
[[ -f $G ]] || fail "no $G: $(ls "$W/a")"
grep -q "generating: 8/8 sequences" "$W/a.err" || { cat "$W/a.err"; fail "no generation progress on stderr"; }
grep -q "tok/s | ETA" "$W/a.err" || fail "progress has no tokens/s and ETA"
grep -q "data: generated 264 tokens" "$W/a.out" || { cat "$W/a.out"; fail "no 'generated' message"; }
grep -q "^done: $STEPS/$STEPS steps" "$W/a.out" || fail "no summary"
grep -q '"val_loss"' "$W/a/metrics.jsonl" || fail "no val_loss (data.val) in metrics"
if ((have_h5py)); then
  $PY - "$G" <<'EOF' || fail "generated set is not a token dataset"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] == "nibble-tokens", f.attrs["format"]
assert f.attrs["vocab_size"] == 512
t = f["train"][()]
assert t.shape == (8 * 33,), t.shape
assert f["train"].attrs["n_documents"] == 8
assert (t.reshape(8, 33)[:, 0] == 1).all(), "sequences do not start with BOS"
assert len(set(t.reshape(8, 33)[:, 1])) > 1, "random starts are all the same"
assert f["val"].shape == (0,)
assert "datafree" in f.attrs["prepare_key"]
EOF
fi

# --- the same set with one thread ----------------------------------------------------------------
run t1 out_dir="$W/t1" threads=1 steps=1
if ((have_h5py)); then
  $PY - "$G" "$W/t1/generated.tokens.h5" <<'EOF' || fail "generated set depends on the thread count"
import sys, h5py
a, b = (h5py.File(p, "r")["train"][()] for p in sys.argv[1:3])
assert a.tobytes() == b.tobytes()
EOF
else
  echo "note: h5py missing, not comparing the generated sets"
fi

# --- resume: stop half-way, continue (the set is reused) == the straight run ------------------------
run b1 out_dir="$W/b" --stop-at $HALF
run b2 out_dir="$W/b" resume=true
grep -q "continuing from" "$W/b2.out" || fail "resume did not load latest.h5"
grep -q "data: reusing .*generated.tokens.h5" "$W/b2.out" || { cat "$W/b2.out"; fail "resume did not reuse the set"; }
grep -q "generating:" "$W/b2.err" && fail "resume generated the set again"
# --- the set deleted before resuming: made again, identically
run c1 out_dir="$W/c" --stop-at $HALF
rm "$W/c/generated.tokens.h5"
run c2 out_dir="$W/c" resume=true
grep -q "data: generated" "$W/c2.out" || fail "deleted set not generated again"
curve() { $PY -c "
import json, sys
print([(r['step'], r['loss'], r.get('val_loss')) for r in map(json.loads, open(sys.argv[1])) if 'loss' in r])" "$1"; }
[[ "$(curve "$W/a/metrics.jsonl")" == "$(curve "$W/b/metrics.jsonl")" ]] || fail "resumed loss curve differs"
[[ "$(curve "$W/a/metrics.jsonl")" == "$(curve "$W/c/metrics.jsonl")" ]] || fail "loss curve differs after regenerating"
if ((have_h5py)); then
  $PY - "$W/a/latest.h5" "$W/b/latest.h5" "$W/c/latest.h5" <<'EOF' || fail "resumed parameters differ"
import sys, h5py
a = h5py.File(sys.argv[1], "r")
for p in sys.argv[2:]:
    b = h5py.File(p, "r")
    n = 0
    for grp in ("params", "quant", "optim/m", "optim/v"):
        for k in a[grp]:
            assert a[grp][k][()].tobytes() == b[grp][k][()].tobytes(), (p, grp, k)
            n += 1
    assert n > 20, n
EOF
fi

# --- a teacher checkpoint (distill.teacher) writes the text for a student trained from scratch -------
run s out_dir="$W/s" model.init=random model.dim=32 model.n_layers=1 model.n_heads=2 quant.enabled=false \
    distill.teacher="$W/a/latest.h5" steps=2 ckpt_every=0
grep -q "distill: teacher $W/a/latest.h5" "$W/s.out" || { cat "$W/s.out"; fail "teacher checkpoint not used"; }
[[ -f $W/s/generated.tokens.h5 ]] || fail "no generated set with a teacher checkpoint"

# --- refused: data.train with data_free (file:line), data_free without distillation -------------------
printf '  train: %s\n' "$W/val.txt" >"$W/train_line"
sed "/^data:/r $W/train_line" "$W/r.yaml" >"$W/bad.yaml"
"$NIBBLE" train "$W/bad.yaml" >"$W/bad.out" 2>&1
rc=$?
[[ $rc == 1 ]] || { cat "$W/bad.out"; fail "data.train + data_free: exit $rc, expected 1"; }
grep -q "bad.yaml:12:10: data.train: not read with distill.data_free" "$W/bad.out" || { cat "$W/bad.out"; fail "message"; }
"$NIBBLE" train "$W/r.yaml" distill.enabled=false >"$W/bad2.out" 2>&1 && fail "data_free without distill.enabled accepted"
grep -q "distill.data_free: needs distill.enabled: true" "$W/bad2.out" || { cat "$W/bad2.out"; fail "message 2"; }
echo "ok"

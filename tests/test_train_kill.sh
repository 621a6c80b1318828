#!/usr/bin/env bash
# test_train_kill.sh: crash safety. A training run that checkpoints every step is killed with
# SIGKILL at random moments (often in the middle of a checkpoint write); every time, latest.h5
# must load and `resume: true` must continue from it. Stale temp files are cleaned on restart.
set -uo pipefail
NIBBLE=${NIBBLE:?path of the nibble binary}
ROOT=${NB_SOURCE_ROOT:?project root}
W=$(mktemp -d "${TMPDIR:-/tmp}/nb_train_kill.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
KILLS=${NB_KILLS:-12}
[[ "${NB_SANITIZE:-0}" == 1 ]] && KILLS=3

head -c 30000 "$ROOT/examples/data/tinyshakespeare.txt" >"$W/text.txt"
cat >"$W/r.yaml" <<YAML
out_dir: $W/run
seed: 3
threads: 1
steps: 100000
eval_every: 0
log_every: 1
ckpt_every: 1
keep_last: 2
resume: true
model: {dim: 32, n_layers: 2, n_heads: 2, seq_len: 32}
data: {train: $W/text.txt, tokenizer: char, batch_size: 4}
YAML

RANDOM=42
last=-1
for i in $(seq 1 "$KILLS"); do
  "$NIBBLE" train "$W/r.yaml" --quiet >"$W/log.txt" 2>&1 &
  pid=$!
  # wait until a checkpoint exists (the first run writes one after its first step), then kill
  # at a random moment
  for _ in $(seq 1 300); do
    [[ -f $W/run/latest.h5 ]] && break
    sleep 0.05
  done
  sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  [[ -f $W/run/latest.h5 ]] || { cat "$W/log.txt"; fail "kill $i: no latest.h5"; }
  out=$("$NIBBLE" eval "$W/run/latest.h5" --data "$W/text.txt" --max-windows 1 --json 2>&1) \
    || fail "kill $i: latest.h5 does not load: $out"
  step=$(/usr/bin/python3 -c "import h5py,sys; print(int(h5py.File(sys.argv[1])['/'].attrs['step']))" "$W/run/latest.h5" 2>/dev/null || echo 0)
  [[ $step -ge $last ]] || fail "kill $i: latest.h5 went back from step $last to $step"
  last=$step
done
# one more start resumes from the last checkpoint and removes stale temp files
"$NIBBLE" train "$W/r.yaml" --stop-at $((last + 2)) --quiet >"$W/log.txt" 2>&1 || { cat "$W/log.txt"; fail "final resume"; }
grep -q "continuing from .*latest.h5 at step $last" "$W/log.txt" || { cat "$W/log.txt"; fail "did not resume at step $last"; }
ls "$W/run" | grep -q "tmp-" && fail "stale temp files left: $(ls "$W/run")"
echo "ok: $KILLS kills, last checkpoint step $last"

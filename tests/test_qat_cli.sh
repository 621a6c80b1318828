#!/usr/bin/env bash
# test_qat_cli.sh: QAT as users see it, on a tiny char model: nibble ptq, eval of quantized
# checkpoints (--fp32, --compare JSON and "recovered", --per-layer), quant.enabled=false == fp32,
# schedule transitions in metrics.jsonl, a policy naming no parameter.
set -u
NIBBLE=${NIBBLE:?path of the nibble binary}
ROOT=${NB_SOURCE_ROOT:?project root}
command -v python3 >/dev/null || { echo "SKIP: python3 needed to read JSON"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }

head -c 12000 "$ROOT/examples/data/tinyshakespeare.txt" > "$W/train.txt"
tail -c 3000 "$ROOT/examples/data/tinyshakespeare.txt" > "$W/val.txt"
cat > "$W/r.yaml" <<EOF
name: tiny_qat
out_dir: $W/qat
seed: 3
steps: 8
eval_every: 0
log_every: 1
ckpt_every: 0
model: {dim: 32, n_layers: 2, n_heads: 2, seq_len: 32, init: random}
data: {train: $W/train.txt, val: $W/val.txt, tokenizer: char, cache_dir: $W/cache, batch_size: 4}
optim: {lr: 3.0e-3, min_lr: 3.0e-4, weight_decay: 0.0}
schedule: {kind: cosine, warmup_steps: 2}
quant:
  enabled: true
  start_step: 2
  act_start_step: 4
  lsq_warmup_steps: 3
  weights:
    - {match: "*", bits: 4, granularity: group, group_size: 32, estimator: lsq}
  activations:
    - {match: "*", bits: 8, granularity: token}
EOF
run() { "$@" > "$W/out" 2> "$W/err" || { cat "$W/out" "$W/err"; fail "$* exited $?"; }; }
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# --- QAT run: transitions at the configured steps in metrics.jsonl
run "$NIBBLE" train "$W/r.yaml" --quiet
M="$W/qat/metrics.jsonl"
python3 - "$M" <<'EOF' || fail "schedule transitions missing from metrics.jsonl"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"event"' in l]
got = {(e["step"], e["message"].split(" (")[0]) for e in ev if e["event"] == "qat"}
want = {(2, "weight fake-quant on"), (4, "activation fake-quant on"), (5, "learned scales start learning")}
missing = want - got
if missing:
    print("missing", sorted(missing), "got", sorted(got)); sys.exit(1)
EOF

# --- quant.enabled=false is the fp32 run: same loss as the recipe with no quant section at all
run "$NIBBLE" train "$W/r.yaml" quant.enabled=false out_dir="$W/fp32" --quiet
sed '/^quant:/,$d' "$W/r.yaml" > "$W/plain.yaml"
run "$NIBBLE" train "$W/plain.yaml" out_dir="$W/plain" --quiet
grep -q '"event": "qat"' "$W/fp32/metrics.jsonl" && fail "quant.enabled=false still logged qat events"
l_off=$(grep '"val_loss"' "$W/fp32/metrics.jsonl" | tail -1 | python3 -c "import json,sys; print(json.load(sys.stdin)['val_loss'])")
l_plain=$(grep '"val_loss"' "$W/plain/metrics.jsonl" | tail -1 | python3 -c "import json,sys; print(json.load(sys.stdin)['val_loss'])")
[ "$l_off" = "$l_plain" ] || fail "quant.enabled=false val_loss $l_off != plain fp32 $l_plain"

# --- distillation from the frozen starting model: at step 1 student == teacher, so KL = 0 and the
#     loss is alpha * CE exactly
run "$NIBBLE" train "$W/plain.yaml" out_dir="$W/kd" distill.enabled=true distill.alpha=0.25 distill.temperature=2 --quiet
python3 - "$W/plain/metrics.jsonl" "$W/kd/metrics.jsonl" <<'EOF2' || fail "distillation loss at step 1 is not alpha * CE"
import json, sys
first = lambda p: next(json.loads(l)["loss"] for l in open(p) if '"loss"' in l)
ce, kd = first(sys.argv[1]), first(sys.argv[2])
assert abs(kd - 0.25 * ce) < 1e-5 * ce, (kd, ce)
EOF2
# data_free needs no training text: a recipe that also names data.train is refused, naming the key
"$NIBBLE" train "$W/plain.yaml" out_dir="$W/kd2" distill.enabled=true distill.data_free=true --quiet > "$W/kd2.out" 2>&1 \
    && fail "distill.data_free with data.train accepted"
grep -q "data.train" "$W/kd2.out" || fail "data_free + data.train error does not name data.train: $(cat "$W/kd2.out")"

# --- ptq: the checkpoint evaluates as the fake-quantized original
FP=$W/fp32/latest.h5
run "$NIBBLE" ptq "$FP" --recipe "$W/r.yaml" -o "$W/ptq.h5"
grep -q "layers.0.attn.wq" "$W/out" || fail "ptq printed no per-layer table"
# the same policy applied live by the training loop with lr 0 (weights unchanged, minmax observers on
# the same weights) must give the same loss as the PTQ checkpoint
run "$NIBBLE" train "$W/r.yaml" out_dir="$W/live" model.init=checkpoint:"$FP" steps=1 optim.lr=0 optim.min_lr=0 \
    quant.start_step=0 quant.act_start_step=-1 quant.lsq_warmup_steps=5 --quiet
run "$NIBBLE" eval "$FP" "$W/ptq.h5" "$W/live/latest.h5" --data "$W/val.txt" --json
cp "$W/out" "$W/e.json"
python3 - "$W/e.json" <<'EOF' || fail "ptq checkpoint loss differs from the live fake-quantized original"
import json, sys
m = json.load(open(sys.argv[1]))["models"]
fp, ptq, live = (r["loss"] for r in m)
assert m[1]["quantized"] and m[2]["quantized"] and not m[0]["quantized"], m
assert abs(ptq - live) < 1e-6, (ptq, live)
assert ptq != fp, (ptq, fp)
EOF
run "$NIBBLE" eval --fp32 "$W/ptq.h5" "$FP" --data "$W/val.txt" --json
python3 -c "
import json,sys; m=json.load(open('$W/out'))['models']
assert m[0]['loss'] == m[1]['loss'] and not m[0]['quantized'], m" || fail "eval --fp32 of the PTQ checkpoint is not the fp32 model"

# --- --compare: keys and recovered from the three losses
run "$NIBBLE" eval --compare "$FP" "$W/ptq.h5" "$W/qat/latest.h5" --data "$W/val.txt" --json
python3 - "$W/out" <<'EOF' || fail "eval --compare JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"models", "recovered"}, d.keys()
for r in d["models"]:
    assert {"model", "loss", "perplexity", "tokens"} <= set(r), r
fp, ptq, qat = (r["loss"] for r in d["models"])
want = (ptq - qat) / (ptq - fp) if ptq > fp else None
if want is None:
    assert d["recovered"] is None, d
else:
    assert abs(d["recovered"] - want) < 1e-4, (d["recovered"], want)
EOF
run "$NIBBLE" eval --compare "$FP" "$W/ptq.h5" "$W/qat/latest.h5" --data "$W/val.txt"
grep -q "recovered" "$W/out" || fail "eval --compare printed no recovered line"
"$NIBBLE" eval --compare "$FP" "$W/ptq.h5" --data "$W/val.txt" > /dev/null 2>&1 && fail "--compare with two models accepted"

# --- --per-layer
run "$NIBBLE" eval "$W/qat/latest.h5" --per-layer --ptq-ref "$FP" --json
python3 -c "
import json; d=json.load(open('$W/out')); L=d['layers']
assert len(L) == 14 and all(l['sqnr_db'] > 5 and 0 <= l['clipped'] < 1 and l['vs_ptq'] >= 0 for l in L), L[:2]" \
    || fail "eval --per-layer JSON"
"$NIBBLE" eval "$FP" --per-layer > /dev/null 2> "$W/err" && fail "--per-layer of an fp32 checkpoint accepted"
grep -q "no quantization policy" "$W/err" || fail "--per-layer of an fp32 checkpoint: $(cat "$W/err")"

# --- a policy naming no parameter: exit 1 with the message (ptq and train)
"$NIBBLE" ptq "$FP" --recipe "$W/r.yaml" -o "$W/bad.h5" 'quant.weights=[{match: "nothing.*", bits: 4}]' \
    > /dev/null 2> "$W/err"
rc=$?
[ $rc -eq 1 ] || fail "ptq with a rule naming no parameter: exit $rc, want 1"
grep -q 'matches no parameter' "$W/err" || fail "ptq: message: $(cat "$W/err")"
[ -e "$W/bad.h5" ] && fail "ptq wrote a checkpoint for a bad policy"
"$NIBBLE" train "$W/r.yaml" out_dir="$W/bad" 'quant.weights=[{match: "nothing.*", bits: 4}]' --quiet \
    > /dev/null 2> "$W/err"
rc=$?
[ $rc -eq 1 ] || fail "train with a rule naming no parameter: exit $rc, want 1"
grep -q 'matches no parameter' "$W/err" || fail "train: message: $(cat "$W/err")"
"$NIBBLE" ptq "$FP" --recipe "$W/r.yaml" -o "$W/x.h5" quant.enabled=false > /dev/null 2>&1
[ $? -eq 1 ] || fail "ptq with quant.enabled=false should exit 1"
echo "ok"

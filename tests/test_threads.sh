#!/usr/bin/env bash
# test_threads.sh: training is independent of the thread count. A tiny model trained N steps with
# threads=1 and threads=2 (same seed) ends with bit-identical parameters and optimizer state, and the
# same per-step loss, grad_norm and val_loss in metrics.jsonl (GEMM, ops, cross-entropy mean, grad
# norm and eval loss all reduce in a fixed order whatever the thread count). Sizes are chosen so the
# OpenMP loops of cross-entropy, norms and elementwise ops really run in parallel (rows x cols >= 32768).
set -uo pipefail
NIBBLE=${NIBBLE:?path of the nibble binary}
ROOT=${NB_SOURCE_ROOT:?project root}
PY=/usr/bin/python3
$PY -c 'import h5py, numpy' 2>/dev/null || { echo "SKIP: h5py/numpy not available"; exit 77; }
W=$(mktemp -d "${TMPDIR:-/tmp}/nb_threads.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# libgomp's default (spinning) wait makes a 2-thread run ~70x slower on an oversubscribed machine;
# the wait policy does not change any result
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

STEPS=6
head -c 30000 "$ROOT/examples/data/tinyshakespeare.txt" >"$W/t.txt"
cat >"$W/r.yaml" <<EOF
name: threads
out_dir: $W/run
seed: 5
steps: $STEPS
eval_every: 3
eval_batches: 2
log_every: 1
ckpt_every: $STEPS
sample_tokens: 0
model:
  dim: 64
  n_layers: 2
  n_heads: 4
  seq_len: 64
data:
  train: $W/t.txt
  val_fraction: 0.1
  tokenizer: char
  batch_size: 8
optim:
  lr: 3.0e-3
  grad_clip: 1.0
EOF
for t in 1 2; do
    "$NIBBLE" train "$W/r.yaml" out_dir="$W/t$t" threads=$t --quiet >/dev/null 2>"$W/e$t.txt" \
        || { cat "$W/e$t.txt"; fail "threads=$t run failed"; }
done
$PY - "$W/t1" "$W/t2" <<'EOF' || fail "threads=1 and threads=2 differ"
import h5py, json, sys, numpy as np
def sets(d):
    out = {}
    with h5py.File(d + "/latest.h5", "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
a, b = sets(sys.argv[1]), sets(sys.argv[2])
assert a.keys() == b.keys(), "different datasets"
floats = [k for k in a if np.asarray(a[k]).dtype.kind == "f"]
assert any(k.startswith("params") or "tok_emb" in k for k in floats), sorted(a)[:10]
bad = [k for k in floats if np.asarray(a[k]).tobytes() != np.asarray(b[k]).tobytes()]
assert not bad, "not bit-identical: %s" % bad[:10]
def rows(d):
    return [{k: r[k] for k in ("step", "loss", "grad_norm", "val_loss") if k in r}
            for r in map(json.loads, open(d + "/metrics.jsonl")) if "loss" in r]
ra, rb = rows(sys.argv[1]), rows(sys.argv[2])
assert ra and ra == rb, "metrics differ:\n%s\n%s" % (ra, rb)
print("bit-identical: %d float datasets, %d metric rows" % (len(floats), len(ra)))
EOF
exit 0

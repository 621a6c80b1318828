#!/usr/bin/env bash
# test_ckpt_h5py.sh: h5py lists and reads every tensor of a checkpoint written by `nibble import`,
# and `nibble info` agrees with it. Skipped (77) without h5py.
set -euo pipefail
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import h5py, numpy' 2>/dev/null; then echo "SKIP: h5py not available"; exit 77; fi
: "${NIBBLE:?}" "${NB_SOURCE_ROOT:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data="$NB_SOURCE_ROOT/examples/data/stories260K"
tokarg=()
# the tokenizer is stored when this build can read llama2.c tokenizers
if "$NIBBLE" import llama2c "$data/model.bin" --tokenizer "$data/tok512.bin" -o "$tmp/probe.h5" >/dev/null 2>&1; then
    tokarg=(--tokenizer "$data/tok512.bin")
fi
"$NIBBLE" import llama2c "$data/model.bin" "${tokarg[@]}" -o "$tmp/s.h5"
"$NIBBLE" info "$tmp/s.h5" --json > "$tmp/info.json"
"$PY" - "$tmp/s.h5" "$data/model.bin" "$tmp/info.json" "${#tokarg[@]}" <<'PYEOF'
import json, sys
import h5py, numpy as np
path, binpath, infopath, with_tok = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
f = h5py.File(path, "r")
assert f.attrs["format"] in ("nibble-checkpoint", b"nibble-checkpoint"), f.attrs["format"]
assert int(f.attrs["version"]) == 1 and int(f.attrs["step"]) == 0
cfg = {k: f["config"].attrs[k] for k in f["config"].attrs}
assert int(cfg["dim"]) == 64 and int(cfg["n_layers"]) == 5 and int(cfg["tied"]) == 1, cfg
# every tensor readable, float32, and equal to the llama2.c file's arrays
raw = np.fromfile(binpath, dtype=np.float32, offset=28)
C, F, L, V, KV = 64, 172, 5, 512, 32
order = [("tok_emb", None, (V, C))]
for name, shape in [("attn_norm", (C,)), ("attn.wq", (C, C)), ("attn.wk", (KV, C)), ("attn.wv", (KV, C)),
                    ("attn.wo", (C, C)), ("ffn_norm", (C,)), ("ffn.w1", (F, C)), ("ffn.w2", (C, F)), ("ffn.w3", (F, C))]:
    order.append((name, "stacked", shape))
order.append(("norm", None, (C,)))
off = 0
n_read = 0
for name, stacked, shape in order:
    size = int(np.prod(shape))
    names = [f"layers.{l}.{name}" for l in range(L)] if stacked else [name]
    for nm in names:
        d = f["params"][nm]
        assert d.dtype == np.float32 and d.shape == shape, (nm, d.dtype, d.shape)
        a = d[()]
        assert np.array_equal(a, raw[off:off + size].reshape(shape)), nm
        off += size
        n_read += 1
assert n_read == len(f["params"]) == 47, (n_read, len(f["params"]))
info = json.load(open(infopath))
assert info["parameters"] == sum(f["params"][k].size for k in f["params"])
assert {t["name"]: tuple(t["shape"]) for t in info["tensors"]} == {k: f["params"][k].shape for k in f["params"]}
if with_tok:
    assert "tokenizer" in f and info["tokenizer"]["vocab"] == 512
print(f"h5py read {n_read} tensors ({off} floats), identical to the llama2.c file")
PYEOF

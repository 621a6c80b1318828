#!/bin/bash
# test_export_h5py.sh: nibble's HDF5 export is readable by h5py as documented: config attributes,
# int8 codes and int4 codes packed two per byte (element 2k low nibble, 2k+1 high, two's
# complement) with per-row / per-group scales dequantize to within half a step of llama2.c's fp32
# stories260K weights; the vocabulary round-trips.
set -u
root=${NB_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
bindir=$(dirname "${NIBBLE:-$root/build/nibble}")
tool=$bindir/nb_rt_tool
data=$root/examples/data/stories260K
[ -x "$tool" ] || { echo "SKIP: $tool not built"; exit 77; }
/usr/bin/python3 -c "import h5py, numpy" 2>/dev/null || { echo "SKIP: h5py/numpy not available"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$tool" export "$data/model.bin" "$data/tok512.bin" nibble int8 "$tmp/s8.h5" || exit 1
"$tool" export "$data/model.bin" "$data/tok512.bin" nibble int4 32 "$tmp/s4.h5" || exit 1
/usr/bin/python3 - "$data/model.bin" "$tmp/s8.h5" "$tmp/s4.h5" <<'PY'
import sys, h5py, numpy as np
raw = np.fromfile(sys.argv[1], dtype=np.int32, count=7)
dim, hidden, L, H, KV, V, T = [int(x) for x in raw]
w = np.fromfile(sys.argv[1], dtype=np.float32, offset=28)
o = V * dim + L * dim
wq0 = w[o:o + dim * dim].reshape(dim, dim)           # layers.0.attn.wq
o2 = o + L * dim * dim + 2 * L * (dim // H * KV) * dim + L * dim * dim + L * dim
w2_0 = w[o2 + L * hidden * dim: o2 + L * hidden * dim + dim * hidden].reshape(dim, hidden)  # layers.0.ffn.w2

def int4(packed, cols):
    lo = (packed & 15).astype(np.int8); hi = (packed >> 4).astype(np.int8)
    e = np.empty((packed.shape[0], packed.shape[1] * 2), np.int8)
    e[:, 0::2] = lo; e[:, 1::2] = hi
    e = np.where(e >= 8, e - 16, e)
    return e[:, :cols]

def deq(g):
    qt, cols, group = int(g.attrs["qtype"]), int(g.attrs["cols"]), int(g.attrs["group"])
    codes = g["data"][()]
    codes = codes.astype(np.float32) if qt == 4 else int4(codes, cols).astype(np.float32)
    s = np.repeat(g["scales"][()], group, axis=1)[:, :cols]
    z = np.repeat(g["zeros"][()], group, axis=1)[:, :cols] if "zeros" in g else 0
    return s * (codes - z), s

for path, qt in ((sys.argv[2], 4), (sys.argv[3], 5)):
    f = h5py.File(path, "r")
    assert f.attrs["format"] == b"nibble-export" or f.attrs["format"] == "nibble-export", f.attrs["format"]
    assert (int(f.attrs["dim"]), int(f.attrs["hidden_dim"]), int(f.attrs["n_layers"])) == (dim, hidden, L)
    for name, ref in (("layers.0.attn.wq", wq0), ("layers.0.ffn.w2", w2_0)):
        g = f["tensors"][name]
        assert int(g.attrs["qtype"]) == qt, (name, g.attrs["qtype"])
        x, s = deq(g)
        err = np.abs(x - ref)
        assert (err <= 0.5 * s * 1.001 + 1e-7).all(), (path, name, float(err.max()))
    assert f["tensors"]["norm"]["data"].dtype == np.float32
    vb = f["vocab"]["bytes"][()].tobytes(); off = f["vocab"]["offsets"][()]
    assert vb[off[403]:off[404]] == b" Once", vb[off[403]:off[404]]
    print("ok:", path.split("/")[-1], "qtype", qt, "group", int(f["tensors"]["layers.0.ffn.w2"].attrs["group"]))
PY

#!/usr/bin/env bash
# test_import_info.sh: `nibble import llama2c` and `nibble info` (text, JSON, errors, exit codes).
set -uo pipefail
: "${NIBBLE:?}" "${NB_SOURCE_ROOT:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data="$NB_SOURCE_ROOT/examples/data/stories260K"
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() { # expected-rc needle command...
    local want=$1 needle=$2; shift 2
    local out rc
    out=$("$@" 2>&1); rc=$?
    [ "$rc" = "$want" ] || fail "$*: exit $rc, want $want: $out"
    grep -qF -- "$needle" <<<"$out" || fail "$*: output lacks '$needle': $out"
}

expect_rc 0 "260032 parameters, with tokenizer" \
    "$NIBBLE" import llama2c "$data/model.bin" --tokenizer "$data/tok512.bin" -o "$tmp/s.h5"
expect_rc 0 "tokenizer:   llama2c, 512 tokens" "$NIBBLE" info "$tmp/s.h5"
expect_rc 0 "parameters:  260032" "$NIBBLE" info "$tmp/s.h5"
expect_rc 0 "layers.4.ffn.w2                  (64, 172)" "$NIBBLE" info "$tmp/s.h5"
expect_rc 0 "llama2.c legacy checkpoint" "$NIBBLE" info "$data/model.bin"
"$NIBBLE" info "$tmp/s.h5" --json > "$tmp/a.json" || fail "info --json"
"$NIBBLE" info "$data/model.bin" --json > "$tmp/b.json" || fail "info --json (llama2c)"
python3 - "$tmp/a.json" "$tmp/b.json" <<'PY' || fail "JSON check"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["format"] == "nibble-checkpoint" and b["format"] == "llama2c"
assert a["parameters"] == b["parameters"] == 260032
assert a["config"] == b["config"] and a["config"]["n_kv_heads"] == 4 and a["config"]["tied"] is True
assert [t["name"] for t in a["tensors"]] == [t["name"] for t in b["tensors"]]
assert a["tokenizer"] == {"kind": "llama2c", "vocab": 512} and a["quantization"] is None
assert a["attributes"]["source"].startswith("llama2c:")
PY
# errors: the message names the file; bad or missing input exits 1
head -c 1000 "$data/model.bin" > "$tmp/trunc.bin"
expect_rc 1 "trunc.bin: 1000 bytes, but the llama2.c header" "$NIBBLE" import llama2c "$tmp/trunc.bin" -o "$tmp/x.h5"
[ ! -e "$tmp/x.h5" ] || fail "a failed import left an output file"
expect_rc 1 "the tokenizer has 512 tokens but" \
    "$NIBBLE" import llama2c "$NB_SOURCE_ROOT/tests/fuzz/corpus/llama2c_bin/tied.bin" --tokenizer "$data/tok512.bin" -o "$tmp/x.h5"
expect_rc 1 "$tmp/none.bin" "$NIBBLE" import llama2c "$tmp/none.bin" -o "$tmp/x.h5"
expect_rc 1 "unknown source format 'gguf'" "$NIBBLE" import gguf "$data/model.bin" -o "$tmp/x.h5"
expect_rc 1 "usage: nibble import" "$NIBBLE" import llama2c "$data/model.bin"
expect_rc 1 "not a nibble checkpoint, nor a llama2.c model" "$NIBBLE" info "$data/tok512.bin"
head -c 5000 "$tmp/s.h5" > "$tmp/t.h5"
expect_rc 1 "t.h5: truncated or extended checkpoint" "$NIBBLE" info "$tmp/t.h5"
expect_rc 1 "$tmp/none.h5" "$NIBBLE" info "$tmp/none.h5"
expect_rc 0 "usage: nibble info" "$NIBBLE" info --help
echo "import/info: ok"

#!/usr/bin/env bash
# test_prepare.sh: `nibble prepare` on Tiny Shakespeare (char) and TinyStories (llama2.c BPE); h5py
# reads the result and the split sizes add up; bad inputs exit 1 with a message.
set -euo pipefail
: "${NIBBLE:?NIBBLE must point at the nibble binary}" "${NB_SOURCE_ROOT:?}"
data=$NB_SOURCE_ROOT/examples/data
py=/usr/bin/python3
if ! $py -c "import h5py" 2>/dev/null; then echo "SKIP: h5py is not installed for $py"; exit 77; fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# char-level Shakespeare, 10% validation tail
out=$("$NIBBLE" prepare "$data/tinyshakespeare.txt" --tokenizer char -o "$dir/shakespeare.h5" --val-fraction 0.1)
echo "$out"
grep -q "train 1003854 tokens" <<<"$out" || fail "unexpected train size: $out"
$py - "$dir/shakespeare.h5" "$data/tinyshakespeare.txt" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
text = open(sys.argv[2], encoding="utf-8").read()
tr, va = f["train"][:], f["val"][:]
assert f["train"].attrs["n_tokens"] == len(tr) and f["val"].attrs["n_tokens"] == len(va)
assert len(tr) + len(va) == len(text), (len(tr), len(va), len(text))
assert len(tr) == int(len(text) * 0.9)                   # nanoGPT's split
chars = sorted(set(text))
assert f.attrs["vocab_size"] == len(chars) == 65 and f.attrs["tokenizer"] == "char"
t = f["tokenizer"]
pieces, off = t["pieces"][:].tobytes(), t["offsets"][:]
vocab = [pieces[off[i]:off[i + 1]].decode() for i in range(len(off) - 1)]
assert vocab == chars
assert "".join(vocab[i] for i in tr[:200]) == text[:200]
assert "".join(vocab[i] for i in va[-100:]) == text[-100:]
print("h5py: shakespeare ok", len(tr), len(va))
PY

# llama2.c tokenizer, stories with a separate validation file: one BOS per story
"$NIBBLE" prepare "$data/tinystories/train_sample_finetune.txt" --tokenizer "llama2c:$data/stories260K/tok512.bin" \
  --val "$data/tinystories/train_sample_heldout.txt" -o "$dir/stories.h5"
$py - "$dir/stories.h5" "$data/tinystories/train_sample_heldout.txt" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
tr, va = f["train"][:], f["val"][:]
assert (tr == 1).sum() == f["train"].attrs["n_documents"] == 2085
assert (va == 1).sum() == f["val"].attrs["n_documents"] == 231
assert tr[0] == 1 and va[0] == 1 and tr.max() < 512
# decode the first validation story as run.c does and compare with the text
t = f["tokenizer"]
pieces, off = t["pieces"][:].tobytes(), t["offsets"][:]
def piece(prev, i):
    p = pieces[off[i]:off[i + 1]]
    if prev == 1 and p.startswith(b" "): p = p[1:]
    if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"): p = bytes([int(p[3:5], 16)])
    return p
end = 1 + list(va[1:]).index(1)
story = b"".join(piece(va[i - 1], va[i]) for i in range(1, end)).decode()
assert story == open(sys.argv[2], encoding="utf-8").read().split("\n<|endoftext|>\n")[0], story[:80]
print("h5py: stories ok", len(tr), len(va))
PY

# bad input: exit 1 and a message naming the problem
expect_fail() { # message-substring, args...
  local want=$1; shift
  set +e; msg=$("$NIBBLE" prepare "$@" 2>&1); rc=$?; set -e
  [[ $rc -eq 1 ]] || fail "prepare $* exited $rc, expected 1 ($msg)"
  grep -q -- "$want" <<<"$msg" || fail "prepare $*: message '$msg' lacks '$want'"
}
expect_fail "unknown tokenizer 'bpe'" "$data/tinyshakespeare.txt" --tokenizer bpe -o "$dir/x.h5"
expect_fail "nonexistent.txt" "$dir/nonexistent.txt" --tokenizer char -o "$dir/x.h5"
expect_fail "tok.bin" "$data/tinyshakespeare.txt" --tokenizer "llama2c:$dir/tok.bin" -o "$dir/x.h5"
: >"$dir/empty.txt"
expect_fail "empty" "$dir/empty.txt" --tokenizer byte -o "$dir/x.h5"
expect_fail "--tokenizer is required" "$data/tinyshakespeare.txt" -o "$dir/x.h5"
expect_fail "val-fraction" "$data/tinyshakespeare.txt" --tokenizer char -o "$dir/x.h5" --val-fraction 2
[[ ! -e $dir/x.h5 ]] || fail "a failed prepare left $dir/x.h5 behind"
"$NIBBLE" prepare --help | grep -q "usage: nibble prepare" || fail "--help"
echo "ok"

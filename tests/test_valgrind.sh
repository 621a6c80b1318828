#!/usr/bin/env bash
# test_valgrind.sh: a short real workload under valgrind (memcheck): `nibble import` of stories260K
# with its tokenizer, `nibble info` of the checkpoint, `nibble prepare` of a small
# text, a few failing invocations (error paths must not leak either) and, once `nibble train`
# exists, a 3-step training run of a tiny recipe with threads 1. Fails on any invalid read/write,
# use of uninitialised values or definite leak. Skipped (77) without valgrind or under the
# sanitizer run (NB_SANITIZE=1: no double instrumentation).
set -uo pipefail
: "${NIBBLE:?}" "${NB_SOURCE_ROOT:?}"
command -v valgrind >/dev/null || { echo "SKIP: valgrind not installed"; exit 77; }
[ "${NB_SANITIZE:-0}" = 1 ] && { echo "SKIP: sanitizer build (no valgrind on top of ASan)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data="$NB_SOURCE_ROOT/examples/data/stories260K"
export OMP_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
fail=0
# vg EXPECTED_EXIT ARGS...: run nibble under memcheck; valgrind's own errors exit with 99
vg() {
    local want=$1 t0=$SECONDS; shift
    valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --track-origins=no --log-file="$tmp/vg.log" "$NIBBLE" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq 99 ] || [ -s "$tmp/vg.log" ]; then
        echo "FAIL: valgrind errors in: nibble $*"; cat "$tmp/vg.log"; fail=1
    elif [ $rc -ne "$want" ]; then
        echo "FAIL: nibble $* exited $rc, expected $want"; cat "$tmp/err"; fail=1
    else
        echo "ok: nibble $* (exit $rc, $((SECONDS - t0)) s)"
    fi
}
start=$SECONDS
vg 0 import llama2c "$data/model.bin" --tokenizer "$data/tok512.bin" -o "$tmp/s.h5"
vg 0 info "$tmp/s.h5"
printf 'To be, or not to be, that is the question.\n<|endoftext|>\nWhether tis nobler in the mind to suffer.\n' > "$tmp/t.txt"
vg 0 prepare "$tmp/t.txt" --tokenizer byte -o "$tmp/d.h5" 2>/dev/null || true
# error paths: a truncated checkpoint, a missing file, a foreign file
head -c 3000 "$tmp/s.h5" > "$tmp/trunc.h5"
vg 1 info "$tmp/trunc.h5"
vg 1 info "$tmp/missing.h5"
# a short training run once the training loop is on this build
train_help=$("$NIBBLE" train --help 2>&1)
if [[ $train_help != *"not implemented"* ]]; then
    cat > "$tmp/r.yaml" <<YAML
model: {dim: 16, n_layers: 1, n_heads: 2, seq_len: 16}
data: {train: "$tmp/t.txt", tokenizer: byte, batch_size: 2}
steps: 3
threads: 1
sample_tokens: 0
out_dir: $tmp/run
YAML
    vg 0 train "$tmp/r.yaml"
else
    echo "note: nibble train not on this build yet; training run skipped"
fi
echo "valgrind workload: $((SECONDS - start)) s"
exit $fail

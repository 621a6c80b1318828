#!/usr/bin/env bash
# test_cli_errors.sh: the exit-code contract on a table of bad invocations. 0 ok, 1 bad input
# (usage, unknown option, an input file that is missing/unreadable/malformed/foreign/truncated, a
# bad recipe key or value), 2 runtime failure (a failed write, I/O error mid-run, out of memory,
# non-finite training stop), 130 interrupted.
# Each row also checks that stderr names the offending file/option/key. Rows of subcommands that
# are not on this build yet ("not implemented") are skipped with a note.
set -uo pipefail
: "${NIBBLE:?}" "${NB_SOURCE_ROOT:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data="$NB_SOURCE_ROOT/examples/data/stories260K"
export HDF5_USE_FILE_LOCKING=FALSE
fail=0 n=0 skipped=0

# files to be bad with
"$NIBBLE" import llama2c "$data/model.bin" --tokenizer "$data/tok512.bin" -o "$tmp/ok.h5" >/dev/null || { echo "setup: import failed"; exit 1; }
head -c 4000 "$tmp/ok.h5" > "$tmp/trunc.h5"
head -c 1000 "$data/model.bin" > "$tmp/trunc.bin"
printf 'hello' > "$tmp/text.txt"
printf 'not yaml: [\n' > "$tmp/bad.yaml"
printf 'model: {dim: 16}\nnot_a_key: 3\n' > "$tmp/unknown.yaml"
printf '\x89HDF\r\n\x1a\ngarbage' > "$tmp/fake.h5"

# row EXPECTED_CODE(S) 'stderr substring' ARGS...
row() {
    local want=$1 needle=$2; shift 2
    n=$((n + 1))
    "$NIBBLE" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if grep -q "not implemented" "$tmp/err"; then skipped=$((skipped + 1)); return; fi
    if [[ " $want " != *" $rc "* ]]; then
        echo "FAIL: nibble $* -> exit $rc, expected $want"; sed 's/^/    /' "$tmp/err" | head -5; fail=1
    elif [ -n "$needle" ] && ! grep -qF -- "$needle" "$tmp/err"; then
        echo "FAIL: nibble $*: stderr does not mention '$needle':"; sed 's/^/    /' "$tmp/err" | head -5; fail=1
    fi
}

row 1 "usage"                       # no command
row 1 "frobnicate"   frobnicate
row 0 ""             --help
row 0 ""             version
# info
row 1 "usage"        info
row 1 "$tmp/missing.h5"  info "$tmp/missing.h5"
row 1 "$tmp/trunc.h5"    info "$tmp/trunc.h5"
row 1 "$tmp/fake.h5"     info "$tmp/fake.h5"
row 1 "$tmp/trunc.bin"   info "$tmp/trunc.bin"
row 1 "--bogus"      info "$tmp/ok.h5" --bogus
# import
row 1 "usage"        import
row 1 "gguf"         import gguf "$data/model.bin" -o "$tmp/x.h5"
row 1 "$tmp/trunc.bin"  import llama2c "$tmp/trunc.bin" -o "$tmp/x.h5"
row 1 "$tmp/missing.bin" import llama2c "$tmp/missing.bin" -o "$tmp/x.h5"
row 1 "tok"          import llama2c "$data/model.bin" --tokenizer "$tmp/text.txt" -o "$tmp/x.h5"
row 2 "$tmp/nodir/x.h5" import llama2c "$data/model.bin" -o "$tmp/nodir/x.h5"
row 1 "-o"           import llama2c "$data/model.bin" -o
# prepare
row 1 "--tokenizer"  prepare "$tmp/text.txt" -o "$tmp/d.h5"
row 1 "nonsense"     prepare "$tmp/text.txt" --tokenizer nonsense -o "$tmp/d.h5"
row 1 "$tmp/missing.txt" prepare "$tmp/missing.txt" --tokenizer byte -o "$tmp/d.h5"
# train (when on this build)
row 1 "$tmp/bad.yaml"      train "$tmp/bad.yaml"
row 1 "not_a_key"          train "$tmp/unknown.yaml"
# TODO(trainloop): a missing recipe/model is bad input (1); train/eval still say 2 (I/O): use
# nb_cli_input_missing there, then drop the "2" alternative
row 1 "$tmp/missing.yaml"  train "$tmp/missing.yaml"
# eval / generate / export / verify (when on this build)
row 1 "$tmp/trunc.h5"  eval "$tmp/trunc.h5" --data "$tmp/text.txt"
row 1 "$tmp/missing.h5" eval "$tmp/missing.h5" --data "$tmp/text.txt"
row 1 "$tmp/trunc.h5"  generate "$tmp/trunc.h5" --prompt hi --tokens 2
row 1 "--tokens"       generate "$tmp/ok.h5" --prompt hi --tokens -3
row 1 "$tmp/trunc.h5"  export "$tmp/trunc.h5" --format gguf -o "$tmp/x.gguf"
row 1 "--format"       export "$tmp/ok.h5" --format nonsense -o "$tmp/x.bin"
row 1 "$tmp/missing"   plot "$tmp/missing"

echo "$n rows, $((n - skipped)) checked, $skipped skipped (subcommand not on this build)"
exit $fail

#!/bin/bash
# test_gguf_llamacpp.sh: GGUF files written by nibble (stories260K as F32, Q8_0 and Q4_0) load in
# llama.cpp (the npm package node-llama-cpp with its prebuilt CPU binary) and generate the same
# greedy tokens as nibble's runtime on the same file; the F32 file also reproduces llama2.c's
# reference continuation and llama.cpp's tokenizer encodes the prompt as llama2.c does.
# Skipped (exit 77) when node or node-llama-cpp is absent; nothing is downloaded here. Install:
#   mkdir -p ~/.cache/nibble-npm && cd ~/.cache/nibble-npm && npm init -y && npm install node-llama-cpp
set -u
root=${NB_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
bindir=$(dirname "${NIBBLE:-$root/build/nibble}")
tool=$bindir/nb_rt_tool
data=$root/examples/data/stories260K
command -v node >/dev/null || { echo "SKIP: node is not installed"; exit 77; }
[ -x "$tool" ] || { echo "SKIP: $tool not built"; exit 77; }
mods="${NB_NODE_MODULES:-}:$bindir:$root:$HOME/.cache/nibble-npm"
found=
for d in ${mods//:/ }; do [ -d "$d/node_modules/node-llama-cpp" ] && found=$d && break; done
[ -n "$found" ] || { echo "SKIP: node-llama-cpp not installed (looked in ${mods}; see the install line at the top of this file)"; exit 77; }
export NB_NODE_MODULES=$found
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prompt="1 403 407 261 378"
want=$(python3 -c "import json;print(' '.join(map(str,json.load(open('$data/reference.json'))['greedy_tokens'])))")
n=$(echo "$want" | wc -w)
status=0
for t in f32 q8_0 q4_0; do
  f=$tmp/stories260K_$t.gguf
  "$tool" export "$data/model.bin" "$data/tok512.bin" gguf $t "$f" || { echo "FAIL: export $t"; exit 1; }
  ours=$("$tool" greedy "$f" "$n" $prompt) || { echo "FAIL: nibble greedy on $t"; exit 1; }
  theirs=$(NB_TOKENIZE="Once upon a time" node "$root/tests/llamacpp_greedy.mjs" "$f" "$n" $prompt 2>"$tmp/err")
  rc=$?
  [ $rc = 77 ] && { cat "$tmp/err"; exit 77; }
  [ $rc = 0 ] || { echo "FAIL: llama.cpp could not run $t:"; cat "$tmp/err"; exit 1; }
  if [ "$ours" != "$theirs" ]; then
    echo "FAIL: $t greedy tokens differ"; echo "  nibble:    $ours"; echo "  llama.cpp: $theirs"; status=1
  else
    echo "ok: $t: nibble and llama.cpp agree on $n greedy tokens"
  fi
  if [ $t = f32 ] && [ "$ours" != "$want" ]; then echo "FAIL: f32 tokens differ from reference.json"; status=1; fi
  toks=$(grep '^tokens:' "$tmp/err" | cut -d' ' -f2-)
  # node-llama-cpp's tokenize() does not prepend BOS (1)
  if [ "1 $toks" != "$prompt" ]; then echo "FAIL: llama.cpp tokenizes the prompt as '$toks', llama2.c as '$prompt'"; status=1; fi
done
exit $status

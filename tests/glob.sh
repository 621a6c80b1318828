#!/bin/sh
# glob.sh ROOT 'PATTERNS' [--exclude 'SUBSTRINGS']: files under ROOT matching the patterns, sorted,
# relative to ROOT, minus those containing any of the substrings. Used by meson.build.
root=$1; pats=$2; excl=${4:-}
cd "$root" || exit 1
for p in $pats; do for f in $p; do [ -f "$f" ] && echo "$f"; done; done | sort -u | while read -r f; do
  skip=0
  for e in $excl; do case "$f" in *"$e"*) skip=1 ;; esac; done
  [ $skip = 0 ] && echo "$f"
done
exit 0

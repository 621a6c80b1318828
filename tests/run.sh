#!/usr/bin/env bash
# run.sh: the whole test suite (README's test command). Installs what is missing, builds, runs the
# Check suites and script tests, then the same suites under AddressSanitizer + UBSan, then a short
# libFuzzer run of every parser. Ends with one line "N passed, N failed".
# Environment: NB_FUZZ_SECONDS (per target, default 6), NB_SKIP_SAN=1, NB_SKIP_FUZZ=1.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh --extras || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
logs=()
fail_build=0

run_suite() { # dir, extra meson args...
  local dir=$1; shift
  if [[ ! -f $dir/build.ninja ]]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; fail_build=$((fail_build + 1)); return; }
  else
    meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; fail_build=$((fail_build + 1)); return; }
  fi
  if ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
    grep -E "error|FAILED" "$dir.build.log" | head -40
    fail_build=$((fail_build + 1)); return
  fi
  meson test -C "$dir" --num-processes 2 --print-errorlogs "${MESON_TEST_ARGS[@]}" 2>&1 | tail -n 30
  logs+=("$dir/meson-logs/testlog.json")
}

echo "== build and test (release)"
MESON_TEST_ARGS=()
run_suite build -Dbuildtype=release

if [[ "${NB_SKIP_SAN:-0}" != 1 ]]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  export NB_SANITIZE=1
  MESON_TEST_ARGS=(--timeout-multiplier 3)
  run_suite build-san -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
  unset NB_SANITIZE
fi

fuzz_pass=0; fuzz_fail=0
if [[ "${NB_SKIP_FUZZ:-0}" != 1 ]] && command -v clang >/dev/null && ls tests/fuzz/fuzz_*.c >/dev/null 2>&1; then
  echo "== fuzzing (libFuzzer, ${NB_FUZZ_SECONDS:-6}s per target)"
  if [[ ! -f build-fuzz/build.ninja ]]; then
    # scalar kernels only: the parsers and the runtime's logic are what the fuzzers reach (the SIMD
    # twins are checked against them, under ASan+UBSan, in the suite above), and clang with both
    # sanitizers needs over ten minutes for the register-tiled attention kernels
    CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized -Dsimd=scalar \
      -Db_sanitize=address,undefined -Db_lundef=false -Dopenmp=false >build-fuzz.setup.log 2>&1
  fi
  if ninja -C build-fuzz >build-fuzz.build.log 2>&1; then
    for src in tests/fuzz/fuzz_*.c; do
      name=$(basename "$src" .c)
      corpus=tests/fuzz/corpus/${name#fuzz_}
      work=build-fuzz/corpus-${name#fuzz_}; mkdir -p "$work"
      if ./build-fuzz/"$name" -max_total_time="${NB_FUZZ_SECONDS:-6}" -rss_limit_mb=2048 -max_len=65536 \
           -print_final_stats=1 "$work" "$corpus" >"build-fuzz/$name.log" 2>&1; then
        echo "fuzz $name: ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "build-fuzz/$name.log" | awk '{print $2}') runs)"
        fuzz_pass=$((fuzz_pass + 1))
      else
        echo "fuzz $name: FAILED"; tail -n 40 "build-fuzz/$name.log"; fuzz_fail=$((fuzz_fail + 1))
      fi
    done
  else
    grep -E "error" build-fuzz.build.log | head -20; fuzz_fail=$((fuzz_fail + 1))
  fi
fi

# Count: a Check suite counts its checks; any other test counts as one.
read -r passed failed < <(python3 - "${logs[@]}" <<'PY'
import json, re, sys
p = f = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        f += 1; continue
    for line in lines:
        t = json.loads(line)
        ok = t.get("result") in ("OK", "SKIP", "EXPECTEDFAIL")
        m = re.findall(r"\d+%: Checks: (\d+), Failures: (\d+), Errors: (\d+)", t.get("stdout", "") or "")
        if m:
            n, fl, er = map(int, m[-1])
            p += n - fl - er; f += fl + er
            if not ok and fl + er == 0: f += 1
        else:
            if ok: p += 1
            else: f += 1
print(p, f)
PY
)
passed=$((passed + fuzz_pass)); failed=$((failed + fuzz_fail + fail_build))
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]

#!/usr/bin/env bash
# Runs each collector fuzz target for a set time (make fuzz; FUZZ_SECONDS per target).
#   fuzz.sh SECONDS TARGET...
# New interesting inputs go to otel-collector/fuzz/corpus/<target>/ (git-ignored); the seed corpus
# and past crashes are read from otel-collector/testdata/fuzz/<target>/. A crash is copied into
# testdata/fuzz/<target>/ (so `make test` replays it on stable, tests/fuzz_replay.rs) and fails
# the run. Prints the executions run per target.
set -euo pipefail
seconds=$1
shift
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here/fuzz"
if rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  # No nightly toolchain to be had: the stable compiler accepts the sanitizer flags with
  # RUSTC_BOOTSTRAP (its sanitizer runtimes ship with it on x86_64 Linux).
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
status=0
summary=()
for t in "$@"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  # Inputs of an earlier run are already in testdata/fuzz/: count only what this run finds.
  rm -f artifacts/"$t"/crash-* artifacts/"$t"/timeout-* artifacts/"$t"/oom-*
  log="artifacts/$t/run.log"
  set +e
  nice -n 10 "${fuzz[@]}" run "$t" "corpus/$t" "../testdata/fuzz/$t" -- \
    -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=0
  for f in artifacts/"$t"/crash-* artifacts/"$t"/timeout-* artifacts/"$t"/oom-*; do
    [ -e "$f" ] || continue
    cp "$f" "../testdata/fuzz/$t/"
    crashes=$((crashes + 1))
  done
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status=1
    echo "fuzz $t: exit $rc, $crashes crashing input(s) copied to testdata/fuzz/$t/; log: $here/fuzz/$log" >&2
    tail -40 "$log" >&2
  fi
  summary+=("$(printf '%-22s %12s executions  %ss  %s crash(es)' "$t" "${execs:-?}" "$seconds" "$crashes")")
done
printf '%s\n' "${summary[@]}"
exit $status

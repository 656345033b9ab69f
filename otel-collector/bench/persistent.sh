#!/usr/bin/env bash
# Throughput with the persistent sending queue (file_storage, fsync off and on) next to the
# memory queue, each mode in its own run of the shared yardstick with rotel as the anchor
# (rotel has no persistent queue, so its figures are the same kind in every run).
#
#   otel-collector/bench/persistent.sh                     # memory, fsync-off, fsync-on
#   MODES="memory fsync-off" DURATION=10 otel-collector/bench/persistent.sh
#
# Builds otel-collector --release, then per mode runs ../shared/bench/otlp/compare.sh (relative
# to the repo root) with CANDIDATE_CMD = the built binary with compare.sh's config and, for the
# persistent modes, an overlay config merged after it: extensions.file_storage/bench (a fresh
# directory under a temp dir, emptied at each collector start), exporters.otlp.sending_queue
# .storage and service.extensions. Knobs of compare.sh (DURATION, WARMUP, REPEAT, ...) pass
# through; its defaults bound each mode to about 2.5 minutes. Prints one summary table at the
# end: per mode spans/s and points/s ours vs rotel (items arriving at the sink), the ratio, peak
# RSS, lost (acknowledged but not arrived) and refused items. The temp dir is removed at exit.
# Env: MODES ("memory fsync-off fsync-on"), CARGO (cargo), TMPDIR (where the queue lives; use a
#      real disk, not tmpfs, for meaningful fsync figures).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHARED="$ROOT/../shared/bench/otlp"
CMP="$SHARED/compare.sh"
MODES=${MODES:-"memory fsync-off fsync-on"}
CARGO=${CARGO:-cargo}
if [ ! -f "$CMP" ]; then
  echo "bench-persistent-queue: $CMP not found; the shared OTLP bench must be checked out at ../shared/bench/otlp next to this repository" >&2
  exit 1
fi
command -v taskset >/dev/null || { echo "bench-persistent-queue: taskset missing (Debian package util-linux)" >&2; exit 1; }
cd "$ROOT"
"$CARGO" build --release -p otel-collector --bin otel-collector
TARGET_DIR=$("$CARGO" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/release/otel-collector"
[ -x "$BIN" ] || { echo "bench-persistent-queue: $BIN was not built" >&2; exit 1; }
REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
WORK=$(mktemp -d -t otelcol-persistent-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
log() { echo "[bench-persistent-queue] $*" >&2; }

# overlay FSYNC QUEUE_DIR -> path of an overlay config putting exporters.otlp on disk.
overlay() {
  local f="$WORK/overlay-fsync-$1.yaml"
  cat > "$f" <<YAML
extensions:
  file_storage/bench:
    directory: $2
    create_directory: true
    fsync: $1
exporters:
  otlp:
    sending_queue:
      storage: file_storage/bench
service:
  extensions: [file_storage/bench]
YAML
  echo "$f"
}

# candidate MODE -> CANDIDATE_CMD template for compare.sh ({config} is its generated config).
candidate() {
  local queue ov
  case "$1" in
    memory) echo "env RUST_LOG=warn $BIN --config {config}"; return ;;
    fsync-off) queue="$WORK/queue-fsync-off"; ov=$(overlay false "$queue") ;;
    fsync-on) queue="$WORK/queue-fsync-on"; ov=$(overlay true "$queue") ;;
    *) log "unknown mode $1 (memory, fsync-off, fsync-on)"; exit 1 ;;
  esac
  # compare.sh runs `bash -c "exec <cmd>"`: sh empties the queue directory, then execs the
  # collector, so the measured pid is the collector's and every start begins with an empty queue.
  echo "sh -c 'rm -rf $queue; exec env RUST_LOG=warn $BIN --config \"\$0\" --config $ov' {config}"
}

TABLES=()
for mode in $MODES; do
  cmd=$(candidate "$mode")
  log "mode $mode: CANDIDATE_CMD=$cmd"
  out="$WORK/$mode.out"
  CANDIDATE_CMD="$cmd" bash "$CMP" | tee "$out"
  tsv=$(sed -n 's/^# anchor: .*; results: \(.*\)$/\1/p' "$out" | tail -n 1)
  [ -n "$tsv" ] || { log "mode $mode: compare.sh printed no results path"; exit 1; }
  TABLES+=("$mode=$SHARED/$tsv")
done

echo
echo "# persistent queue bench, otel-collector $REV, $(date -u '+%Y-%m-%d %H:%M UTC'); per mode one compare.sh run with rotel"
python3 - "${TABLES[@]}" <<'PY'
import csv, sys, statistics as st
print("| mode | spans/s ours / rotel | ratio | points/s ours / rotel | ratio | peak RSS MiB ours / rotel (traces, metrics) | lost spans / points | refused spans / points |")
print("| --- | --- | ---: | --- | ---: | --- | ---: | ---: |")
for arg in sys.argv[1:]:
    mode, path = arg.split("=", 1)
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    def mean(name, sig, col):
        v = [float(r[col]) for r in rows if r["name"] == name and r["signal"] == sig]
        return st.mean(v) if v else float("nan")
    cells, rss, lost, refused = [mode], [], [], []
    for sig in ("traces", "metrics"):
        ours, theirs = mean("candidate", sig, "arrived_per_s"), mean("rotel", sig, "arrived_per_s")
        cells += [f"{ours:,.0f} / {theirs:,.0f}", f"{ours / max(theirs, 1e-9):.2f}"]
        rss.append(f"{mean('candidate', sig, 'rss_kb') / 1024:.1f} / {mean('rotel', sig, 'rss_kb') / 1024:.1f}")
        lost.append(f"{mean('candidate', sig, 'lost'):,.0f}")
        refused.append(f"{mean('candidate', sig, 'sent') - mean('candidate', sig, 'accepted'):,.0f}")
    cells += [", ".join(rss), " / ".join(lost), " / ".join(refused)]
    print("| " + " | ".join(cells) + " |")
PY

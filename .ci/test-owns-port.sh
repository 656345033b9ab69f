#!/usr/bin/env bash
# Test of stack.sh's owns_port (make test-config): it accepts the port its own process listens
# on and fails, naming the port, when another process listens there. Bounded: two local
# listeners on free ports, killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$RUN"; }
trap cleanup EXIT
log() { :; }
die() { echo "$*" >"$RUN/died"; exit 1; }
pid_of() { local f=$RUN/$1.pid; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }
eval "$(sed -n '/^owns_port() {/,/^}/p' .ci/stack.sh)"

listen() { # listen FILE: a listener on a free loopback port; writes the port to FILE
    python3 -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen()
open(sys.argv[1],"w").write(str(s.getsockname()[1])); time.sleep(30)' "$1" &
    pids+=($!)
}
listen "$RUN/mine.port"; echo "${pids[0]}" >"$RUN/mine.pid"
listen "$RUN/other.port"
for _ in $(seq 1 50); do [[ -s $RUN/mine.port && -s $RUN/other.port ]] && break; sleep 0.1; done
mine=$(cat "$RUN/mine.port"); other=$(cat "$RUN/other.port")

( owns_port mine "$mine" ) || { echo "FAIL: owns_port rejected its own port $mine: $(cat "$RUN/died")"; exit 1; }
if ( owns_port mine "$other" ); then echo "FAIL: owns_port accepted port $other of another process"; exit 1; fi
grep -q "port $other " "$RUN/died" || { echo "FAIL: message does not name port $other: $(cat "$RUN/died")"; exit 1; }
echo "owns_port: ok"

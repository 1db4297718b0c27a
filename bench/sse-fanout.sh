#!/usr/bin/env bash
# SSE fan-out: 1,000 (--subs) Server-Sent Events subscribers on one topic, --n messages of 128
# bytes published over HTTP; prints deliveries per second, losses and tern's RSS.
#   bench/sse-fanout.sh [--subs 1000] [--n 1000] [--rate 0]
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
ulimit -n 20000 2>/dev/null || true
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/tern" ./cmd/tern
go build -o "$work/ssefanout" ./bench/ssefanout
"$work/tern" serve --data-dir "" --mqtt "" --unix "" --http 127.0.0.1:18092 --log-level error &
pid=$!
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18092/healthz && break; sleep 0.1; done
"$work/ssefanout" -url http://127.0.0.1:18092 -pid "$pid" "${args[@]}"

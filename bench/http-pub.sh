#!/usr/bin/env bash
# HTTP publish throughput: wrk POSTs 128-byte bodies to tern's /v1/pub and, with the same wrk
# settings in the same run, to a bare net/http handler that only reads the body
# (bench/barehttp). Prints requests/s of each and their ratio.
#
#   bench/http-pub.sh [--duration 10s] [--connections 64] [--threads 2] [--rounds 3]
#
# Needs wrk (apt-get install -y wrk). Servers listen on 127.0.0.1 and are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=10s connections=64 threads=2 rounds=3
while [ $# -gt 0 ]; do
	case "$1" in
	--duration) duration=$2; shift 2 ;;
	--connections) connections=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/tern" ./cmd/tern
go build -o "$work/bare" ./bench/barehttp
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 128)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
"$work/tern" serve --data-dir "" --mqtt "" --unix "" --http 127.0.0.1:18091 --log-level error &
pids+=($!)
"$work/bare" -addr 127.0.0.1:18090 &
pids+=($!)
for port in 18090 18091; do
	for _ in $(seq 100); do
		curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break
		curl -fs -o /dev/null -X POST "http://127.0.0.1:$port/" 2>/dev/null && break
		sleep 0.1
	done
done
rps() { wrk -t"$threads" -c"$connections" -d"$duration" -s "$work/post.lua" "$1" | awk '/Requests\/sec/ {print $2}'; }
printf 'round  bare_req_s  tern_req_s  ratio\n'
for r in $(seq "$rounds"); do
	bare=$(rps http://127.0.0.1:18090/)
	tern=$(rps http://127.0.0.1:18091/v1/pub/bench/http)
	printf '%-5s  %-10s  %-10s  %.2f\n' "$r" "$bare" "$tern" "$(echo "$tern / $bare" | bc -l)"
done

#!/usr/bin/env bash
# RPC round trip with one caller: tern through mBus and through MQTT 5 (bench/rpclat), and
# nats-server request/reply (nats bench service), in the same run, same count and size.
#   bench/rpc-latency.sh [--n 5000] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
n=5000 rounds=3
while [ $# -gt 0 ]; do
	case "$1" in
	--n) n=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	*) echo "unknown flag $1" >&2; exit 2 ;;
	esac
done
command -v nats-server >/dev/null || { echo "nats-server is not installed (apt-get install -y nats-server)" >&2; exit 1; }
ensure_natscli
nats=$NATSCLI
[ -n "$nats" ] || { echo "natscli is not available" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/tern" ./cmd/tern
go build -o "$work/rpclat" ./bench/rpclat
"$work/tern" serve --data-dir "" --unix "" --http "" --mqtt 127.0.0.1:18841 --mbus 127.0.0.1:18842 --log-level error &
pids+=($!)
nats-server -a 127.0.0.1 -p 18843 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
for r in $(seq "$rounds"); do
	echo "round $r"
	"$work/rpclat" -proto mbus -addr 127.0.0.1:18842 -n "$n"
	"$work/rpclat" -proto mqtt5 -addr 127.0.0.1:18841 -n "$n"
	"$nats" -s nats://127.0.0.1:18843 bench service serve benchsvc --msgs "$n" --no-progress >/dev/null 2>&1 &
	serve=$!
	sleep 0.3
	"$nats" -s nats://127.0.0.1:18843 bench service request benchsvc --msgs "$n" --clients 1 --no-progress 2>&1 |
		grep -o 'P50: [0-9.,]*us ~ P90: [0-9.,]*us ~ P99: [0-9.,]*us' | sed 's/^/nats: /'
	kill "$serve" 2>/dev/null || true
done

#!/usr/bin/env bash
# bench/latency.sh: latency under load for tern, Mosquitto and nats-server (MQTT), in one run.
# For each broker and QoS (0 and 1), 1 publisher -> 1 subscriber, 128-byte messages:
#   1. a short unpaced run (`tern bench -n MAXN`) measures the maximum delivered rate;
#   2. a paced run at 50 % of that rate for DUR (`tern bench --rate`, which stamps each message at
#      its scheduled send time and records an HDR histogram, so a stalled broker cannot hide the
#      wait behind a late send) prints p50 / p99 / p99.9.
# The table shows each broker's figures and the ratios tern/mosquitto and tern/nats (below 1:
# tern's latency is lower). Each broker is started fresh on 127.0.0.1 and stopped by PID; every
# run is bounded by timeout. Results go to bench/results/latency-<time>/.
#
# Usage: bench/latency.sh [--max-n N] [--duration 20s] [--only tern|mosquitto|nats[,...]]
set -euo pipefail

MAXN=200000
DUR=20s
ONLY=""
while (($#)); do
	case $1 in
	--max-n) MAXN=${2:?}; shift 2 ;;
	--duration) DUR=${2:?}; shift 2 ;;
	--only) ONLY=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-latency.XXXXXX")
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

BROKERS=(tern mosquitto nats)
[[ -n $ONLY ]] && IFS=, read -r -a BROKERS <<<"$ONLY"
OUT="$ROOT/bench/results/latency-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
ensure_peers
build_tern

declare -A R=()
for b in "${BROKERS[@]}"; do
	start_broker "$b"
	url="mqtt://127.0.0.1:${BROKER_PORT[$b]}"
	for q in 0 1; do
		f="$OUT/$b-q$q-max.json"
		timeout 120 "$TERN" bench --url "$url" -p 1 -s 1 --size 128 -q "$q" -n "$MAXN" -d 60s \
			--topic "lat/max$q" --json >"$f" 2>"$f.err" || { log "$b q$q max run failed: $(tail -n1 "$f.err")"; continue; }
		max=$(awk -v m="$(jget "$f" delivered_msgs_per_s)" 'BEGIN { printf "%d", m }')
		half=$(awk -v m="$max" 'BEGIN { printf "%d", m / 2 }')
		R[$b,$q,max]=$max
		R[$b,$q,rate]=$half
		log "$b QoS $q: max $max msg/s, paced run at $half msg/s for $DUR"
		f="$OUT/$b-q$q-half.json"
		timeout 180 "$TERN" bench --url "$url" -p 1 -s 1 --size 128 -q "$q" --rate "$half" -d "$DUR" \
			--topic "lat/half$q" --json >"$f" 2>"$f.err" || { log "$b q$q paced run failed: $(tail -n1 "$f.err")"; continue; }
		for k in p50 p99 p99_9 lost; do R[$b,$q,$k]=$(jget "$f" "$k"); done
	done
	stop_broker "$b"
done

v() { local x=${R[$1]:-}; echo "${x:-NA}"; }
printf '%-6s %-14s %12s %12s %12s %10s %10s\n' QoS metric tern mosquitto nats tern/mosq tern/nats
for q in 0 1; do
	for k in max rate p50 p99 p99_9 lost; do
		t=$(v "tern,$q,$k"); m=$(v "mosquitto,$q,$k"); n=$(v "nats,$q,$k")
		case $k in max) name="max msg/s" ;; rate) name="paced msg/s" ;; p99_9) name="p99.9 µs" ;; lost) name="lost" ;; *) name="$k µs" ;; esac
		printf '%-6s %-14s %12s %12s %12s %10s %10s\n' "$q" "$name" "$t" "$m" "$n" "$(ratio "$t" "$m")" "$(ratio "$t" "$n")"
	done
done | tee "$OUT/table.txt"

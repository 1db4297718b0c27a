#!/usr/bin/env bash
# bench/idle-memory.sh: memory per idle connection of tern, Mosquitto and nats-server (MQTT).
#
# For each broker, freshly started on 127.0.0.1: read its RSS (VmRSS in /proc/PID/status), open
# N MQTT 3.1.1 connections each with one subscription (`tern bench --idle-conns N --hold D`),
# read the RSS again 2 s after they are all open and once more S seconds later ("settled": a
# broker may give memory back once it has been quiet; tern does after memory.idle_after, 10 s by
# default), and print (after - before) / N in KiB for both readings. Results also
# go to bench/results/idle-<time>/. Broker tern_tls is tern with MQTT over TLS only (a `tern
# cert` server certificate); tern_ws and mosquitto_ws are MQTT over WebSocket only
# (ws://.../mqtt). tern_apiws and tern_sse are tern's HTTP face instead of MQTT (bench/httpidle):
# idle GET /v1/ws WebSockets of JSON frames, and idle Server-Sent Events streams (GET /v1/sub/...);
# tern_mbusws is idle mBus clients over WebSocket (GET /mbus, each after its command.create).
# They run with --only, not by default.
#
# Usage: bench/idle-memory.sh [--conns N] [--settle S] [--hold DURATION]
#                             [--only tern|tern_tls|tern_ws|tern_apiws|tern_sse|tern_mbusws|mosquitto|mosquitto_ws|nats[,...]]
set -euo pipefail

CONNS=5000
SETTLE=15
HOLD=""
ONLY=""
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	--conns) CONNS=${2:?}; shift 2 ;;
	--hold) HOLD=${2:?}; shift 2 ;;
	--settle) SETTLE=${2:?}; shift 2 ;;
	--only) ONLY=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || { echo "--conns must be a positive number" >&2; exit 2; }
[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "--settle is whole seconds (0: no settled reading)" >&2; exit 2; }
# The connections stay open past the settled reading.
HOLD=${HOLD:-$((SETTLE + 5))s}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-idle.XXXXXX")
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BENCH_PID=""
cleanup() {
	[[ -n $BENCH_PID ]] && kill "$BENCH_PID" 2>/dev/null
	stop_all
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BROKERS=(tern mosquitto nats)
[[ -n $ONLY ]] && IFS=, read -r -a BROKERS <<<"$ONLY"

raise_nofile
build_tern
for b in "${BROKERS[@]}"; do
	[[ $b != tern* ]] && { ensure_peers; break; }
done
OUT="$ROOT/bench/results/idle-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"

declare -A BEFORE AFTER PER SETTLED

# per_conn AFTER BEFORE: KiB per connection between two RSS readings.
per_conn() { awk -v a="$1" -v s="$2" -v n="$CONNS" 'BEGIN { printf "%.1f", (a - s) / n }'; }
for b in "${BROKERS[@]}"; do
	[[ $b == tern_apiws || $b == tern_sse || $b == tern_mbusws ]] && [[ -z ${HTTPIDLE:-} ]] && {
		(cd "$ROOT" && go build -o "$WORK/httpidle" ./bench/httpidle) || die "go build bench/httpidle failed"
		HTTPIDLE=$WORK/httpidle
	}
done
for b in "${BROKERS[@]}"; do
	# The HTTP face's subscribers are served by the same broker as MQTT over WebSocket.
	srv=$b
	[[ $b == tern_apiws || $b == tern_sse || $b == tern_mbusws ]] && srv=tern_ws
	start_broker "$srv"
	pid=${BROKER_PID[$srv]}
	port=${BROKER_PORT[$srv]}
	# Let the broker finish starting before the baseline.
	sleep 1
	BEFORE[$b]=$(rss_kib "$pid")
	out="$OUT/$b.out"
	url=(--url "mqtt://127.0.0.1:$port")
	[[ $b == tern_tls ]] && url=(--url "mqtts://127.0.0.1:$port" --cafile "$WORK/tls/ca.crt")
	[[ $b == *_ws ]] && url=(--url "ws://127.0.0.1:$port/mqtt")
	case $b in
	tern_apiws | tern_sse | tern_mbusws)
		mode=ws
		[[ $b == tern_sse ]] && mode=sse
		[[ $b == tern_mbusws ]] && mode=mbus
		timeout 600 "$HTTPIDLE" -url "http://127.0.0.1:$port" -mode "$mode" -n "$CONNS" -hold "$HOLD" \
			>"$out" 2>"$out.err" &
		;;
	*)
		timeout 600 "$TERN" bench "${url[@]}" --idle-conns "$CONNS" --hold "$HOLD" \
			>"$out" 2>"$out.err" &
		;;
	esac
	BENCH_PID=$!
	# Wait for the "ready" line: every connection open and subscribed.
	ready=0
	for _ in $(seq 1 3000); do
		if grep -qs '^ready:' "$out"; then ready=1; break; fi
		kill -0 "$BENCH_PID" 2>/dev/null || break
		sleep 0.1
	done
	if ((ready)); then
		sleep 2 # let the broker settle with the connections idle
		AFTER[$b]=$(rss_kib "$pid")
		PER[$b]=$(per_conn "${AFTER[$b]}" "${BEFORE[$b]}")
		SETTLED[$b]=NA
		if ((SETTLE > 0)); then
			sleep "$SETTLE"
			kill -0 "$BENCH_PID" 2>/dev/null && SETTLED[$b]=$(per_conn "$(rss_kib "$pid")" "${BEFORE[$b]}")
		fi
		log "$b: $(cat "$out")"
	else
		log "$b: the connections did not all open: $(cat "$out" "$out.err" | tail -n2)"
		AFTER[$b]=NA PER[$b]=NA SETTLED[$b]=NA
	fi
	wait "$BENCH_PID" 2>/dev/null || true
	BENCH_PID=""
	[[ -f $out ]] && log "$b: $(tail -n1 "$out")"
	stop_broker "$srv"
done

{
	echo "idle connections: $CONNS, one subscription each (MQTT 3.1.1, or tern's HTTP face for tern_apiws and tern_sse)"
	printf '%-12s %14s %14s %16s %20s\n' broker "RSS before KiB" "RSS after KiB" "KiB/connection" "settled (+${SETTLE} s)"
	for b in "${BROKERS[@]}"; do
		printf '%-12s %14s %14s %16s %20s\n' "$b" "${BEFORE[$b]}" "${AFTER[$b]}" "${PER[$b]}" "${SETTLED[$b]}"
	done
} | tee "$OUT/table.txt"
echo "results: $OUT"

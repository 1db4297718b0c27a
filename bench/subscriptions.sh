#!/usr/bin/env bash
# bench/subscriptions.sh: many distinct subscriptions in tern, Mosquitto and nats-server (MQTT),
# side by side: CONNS connections each subscribe FILTERS distinct filters (exact, + and #, the
# mix of internal/topic's BenchmarkChurn1M) with bench/subload; the table shows the time to
# subscribe them all and the broker's RSS growth per subscription, with ratios tern/mosquitto and
# tern/nats (below 1: tern uses less). Each broker is started fresh on 127.0.0.1 and stopped by
# PID; every step is bounded. Not yet measured here: publish/deliver rate while subscriptions churn
# (the index-level figure is BenchmarkChurn1M's matches/s).
#
# Usage: bench/subscriptions.sh [--conns 100] [--filters 10000] [--only tern|mosquitto|nats[,...]]
set -euo pipefail

CONNS=100
FILTERS=10000
ONLY=""
while (($#)); do
	case $1 in
	--conns) CONNS=${2:?}; shift 2 ;;
	--filters) FILTERS=${2:?}; shift 2 ;;
	--only) ONLY=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-subs.XXXXXX")
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOADPID=""
cleanup() { [[ -n $LOADPID ]] && kill "$LOADPID" 2>/dev/null; stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

BROKERS=(tern mosquitto nats)
[[ -n $ONLY ]] && IFS=, read -r -a BROKERS <<<"$ONLY"
ensure_peers
build_tern
(cd "$ROOT" && go build -o "$WORK/subload" ./bench/subload) || die "building subload failed"
N=$((CONNS * FILTERS))

declare -A SECS=() BPS=()
for b in "${BROKERS[@]}"; do
	start_broker "$b"
	pid=${BROKER_PID[$b]}
	rss0=$(rss_kib "$pid")
	"$WORK/subload" --url "tcp://127.0.0.1:${BROKER_PORT[$b]}" --conns "$CONNS" --filters "$FILTERS" \
		>"$WORK/$b.out" 2>"$WORK/$b.err" &
	LOADPID=$!
	# Poll (bounded, 600 s) for subload's "ready" line or its exit.
	for _ in $(seq 1 1200); do
		grep -q ready "$WORK/$b.out" && break
		kill -0 "$LOADPID" 2>/dev/null || break
		sleep 0.5
	done
	if grep -q ready "$WORK/$b.out"; then
		rss1=$(rss_kib "$pid")
		SECS[$b]=$(awk '{print $5}' "$WORK/$b.out" | tr -d s)
		BPS[$b]=$(awk -v a="$rss0" -v z="$rss1" -v n="$N" 'BEGIN { printf "%.0f", (z - a) * 1024 / n }')
		log "$b: $(cat "$WORK/$b.out"), RSS ${rss0} -> ${rss1} KiB"
	else
		log "$b: did not take $N subscriptions: $(tail -n1 "$WORK/$b.err")"
	fi
	kill "$LOADPID" 2>/dev/null || true
	wait "$LOADPID" 2>/dev/null || true
	LOADPID=""
	stop_broker "$b"
done

v() { local x=${1:-}; echo "${x:-NA}"; }
echo "$CONNS connections x $FILTERS filters = $N subscriptions"
printf '%-22s %10s %10s %10s %10s %10s\n' metric tern mosquitto nats tern/mosq tern/nats
for m in SECS BPS; do
	declare -n A=$m
	t=$(v "${A[tern]:-}"); q=$(v "${A[mosquitto]:-}"); n=$(v "${A[nats]:-}")
	name=$([[ $m == SECS ]] && echo "subscribe time s" || echo "RSS bytes/sub")
	printf '%-22s %10s %10s %10s %10s %10s\n' "$name" "$t" "$q" "$n" "$(ratio "$t" "$q")" "$(ratio "$t" "$n")"
	unset -n A
done

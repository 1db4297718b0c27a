#!/usr/bin/env bash
# bench/subscriptions.sh: many distinct subscriptions in tern, Mosquitto and nats-server (MQTT),
# side by side: CONNS connections each subscribe FILTERS distinct filters (exact, + and #, the
# mix of internal/topic's BenchmarkChurn1M) with bench/subload; the table shows the time to
# subscribe them all and the broker's RSS growth per subscription, read when they are all in
# and again --settle S seconds later (default 20; 0: not) with nothing happening: a broker may
# give memory back once quiet (tern does after memory.idle_after, 10 s by default).
#
# Then, with the subscriptions in place, two phases of CHURN each (default 10 s; 0 skips them):
# in both one publisher sends QoS 0 messages of 64 bytes to topics that each match exactly one of the
# subscriptions in place (exact, + and # alike, round robin over the connections; at most 1,000
# sent and not yet delivered, so no broker queue grows); "steady" is that alone, "churn" adds
# CHURN_CONNS connections that subscribe 10 fresh filters and unsubscribe the previous 10 in a
# loop, each waiting for its SUBACK or UNSUBACK. It prints delivered msg/s in both, churn ops/s
# (filters subscribed or unsubscribed per second) and what was lost. The load tool is the same for
# all three: bench/subload (tern's codec for the subscriptions and the publisher, paho churners).
#
# Ratios are tern/mosquitto and tern/nats (below 1 for bytes and seconds: tern uses less; above
# 1 for rates: tern is faster). Each broker is started fresh on 127.0.0.1 and stopped by PID;
# every step is bounded: subscribing by --timeout (seconds), the two phases by twice CHURN plus
# 60 s. 1,000,000 subscriptions: --conns 100 --filters 10000 (tern allows 10,000 subscriptions
# per session by default, session.max_subscriptions: use more connections, not more filters).
#
# --rate R caps the publisher at R messages per second on a schedule (default 0: as fast as the
# window allows). Without it each broker is measured at its own publish rate, so a broker that
# delivers more leaves its churners less of a shared machine; with the same R for all, churn
# ops/s compare the same load.
#
# --window W (default 1000) is how many messages the publisher may have sent and not yet seen
# delivered: the rate is at most W over the time a message takes through the broker, so where
# that time grows (a walk of a large index per publish) a small window measures latency as much
# as throughput.
#
# Usage: bench/subscriptions.sh [--conns 100] [--filters 10000] [--churn 10s] [--churn-conns 4]
#                               [--window 1000] [--rate 0] [--timeout 600] [--settle 20]
#                               [--only tern|mosquitto|nats[,...]]
set -euo pipefail

CONNS=100
FILTERS=10000
CHURN=10s
CHURN_CONNS=4
WINDOW=1000
RATE=0
TIMEOUT=600
SETTLE=20
ONLY=""
while (($#)); do
	case $1 in
	--conns) CONNS=${2:?}; shift 2 ;;
	--filters) FILTERS=${2:?}; shift 2 ;;
	--churn) CHURN=${2:?}; shift 2 ;;
	--churn-conns) CHURN_CONNS=${2:?}; shift 2 ;;
	--window) WINDOW=${2:?}; shift 2 ;;
	--rate) RATE=${2:?}; shift 2 ;;
	--timeout) TIMEOUT=${2:?}; shift 2 ;;
	--settle) SETTLE=${2:?}; shift 2 ;;
	--only) ONLY=${2:?}; shift 2 ;;
	-h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || { echo "--timeout must be a positive number of seconds" >&2; exit 2; }
[[ $WINDOW =~ ^[1-9][0-9]*$ ]] || { echo "--window must be a positive number of messages" >&2; exit 2; }
[[ $CHURN =~ ^[0-9]+(\.[0-9]+)?(ms|s|m)?$ ]] || { echo "--churn must be a duration (10s, 1m, 0)" >&2; exit 2; }
[[ $CHURN =~ ^0+(\.0+)?(ms|s|m)?$ ]] && CHURN=0
[[ $CHURN =~ ^[0-9.]+$ && $CHURN != 0 ]] && CHURN=${CHURN}s

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
# The churn phase's bound in seconds: CHURN rounded up, plus 60 for the connections and the drain.
churn_s=$(awk -v d="$CHURN" 'BEGIN { v = d + 0; if (d ~ /ms$/) v /= 1000; else if (d ~ /m$/) v *= 60; printf "%d", v + 0.999 }')

# poll FILE PATTERN SECONDS: wait (bounded) until FILE has a line matching PATTERN or the load
# tool exits; true when the line is there.
poll() {
	local end=$((SECONDS + $3))
	while ((SECONDS < end)); do
		grep -qs "$2" "$1" && return 0
		kill -0 "$LOADPID" 2>/dev/null || break
		sleep 0.1
	done
	grep -qs "$2" "$1"
}

# churnval FILE KEY [PHASE]: a key=value figure of subload's line for PHASE (default churn).
churnval() { sed -n "s/^${3:-churn} .*\\b$2=\\([^ ]*\\).*/\\1/p" "$1"; }

[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "--settle is whole seconds (0: no settled reading)" >&2; exit 2; }
declare -A SECS=() BPS=() BPSS=() SPS=() DPS=() OPS=() LOST=()
for b in "${BROKERS[@]}"; do
	start_broker "$b"
	pid=${BROKER_PID[$b]}
	sleep 1 # let it finish starting before the baseline
	rss0=$(rss_kib "$pid")
	"$WORK/subload" --url "tcp://127.0.0.1:${BROKER_PORT[$b]}" --conns "$CONNS" --filters "$FILTERS" \
		--churn "$CHURN" --churn-conns "$CHURN_CONNS" --window "$WINDOW" --rate "$RATE" >"$WORK/$b.out" 2>"$WORK/$b.err" &
	LOADPID=$!
	if poll "$WORK/$b.out" '^ready' "$TIMEOUT"; then
		rss1=$(rss_kib "$pid")
		SECS[$b]=$(awk '/^ready/ {print $5}' "$WORK/$b.out" | tr -d s)
		BPS[$b]=$(awk -v a="$rss0" -v z="$rss1" -v n="$N" 'BEGIN { printf "%.0f", (z - a) * 1024 / n }')
		log "$b: $(grep '^ready' "$WORK/$b.out"), RSS ${rss0} -> ${rss1} KiB"
		if ((SETTLE > 0)); then
			sleep "$SETTLE" # the load tool waits for USR1 before it publishes
			rss2=$(rss_kib "$pid")
			BPSS[$b]=$(awk -v a="$rss0" -v z="$rss2" -v n="$N" 'BEGIN { printf "%.0f", (z - a) * 1024 / n }')
			log "$b: settled RSS ${rss2} KiB"
		fi
		if [[ $CHURN != 0 ]]; then
			kill -USR1 "$LOADPID"
			if poll "$WORK/$b.out" '^churn' $((2 * churn_s + 60)); then
				SPS[$b]=$(churnval "$WORK/$b.out" delivered_per_s steady)
				DPS[$b]=$(churnval "$WORK/$b.out" delivered_per_s)
				OPS[$b]=$(churnval "$WORK/$b.out" churn_ops_per_s)
				LOST[$b]=$(churnval "$WORK/$b.out" lost)
				log "$b: $(grep '^steady\|^churn' "$WORK/$b.out")"
			else
				log "$b: the churn phase did not finish: $(tail -n1 "$WORK/$b.err")"
			fi
		fi
	else
		kill "$LOADPID" 2>/dev/null || true # it says how many it took as it ends
		wait "$LOADPID" 2>/dev/null || true
		log "$b: did not take $N subscriptions within $TIMEOUT s: $(tail -n1 "$WORK/$b.err")"
	fi
	kill "$LOADPID" 2>/dev/null || true
	wait "$LOADPID" 2>/dev/null || true
	LOADPID=""
	stop_broker "$b"
done

v() { local x=${1:-}; echo "${x:-NA}"; }
echo "$CONNS connections x $FILTERS filters = $N subscriptions$([[ $CHURN != 0 ]] && echo "; churn $CHURN, $CHURN_CONNS churning connections")"
printf '%-26s %10s %10s %10s %10s %10s\n' metric tern mosquitto nats tern/mosq tern/nats
metrics=(SECS BPS)
((SETTLE > 0)) && metrics+=(BPSS)
[[ $CHURN != 0 ]] && metrics+=(SPS DPS OPS LOST)
for m in "${metrics[@]}"; do
	declare -n A=$m
	t=$(v "${A[tern]:-}"); q=$(v "${A[mosquitto]:-}"); n=$(v "${A[nats]:-}")
	case $m in
	SECS) name="subscribe time s" ;;
	BPS) name="RSS bytes/sub" ;;
	BPSS) name="  settled, $SETTLE s later" ;;
	SPS) name="delivered msg/s (steady)" ;;
	DPS) name="delivered msg/s (churn)" ;;
	OPS) name="churn ops/s" ;;
	LOST) name="lost (churn)" ;;
	esac
	printf '%-26s %10s %10s %10s %10s %10s\n' "$name" "$t" "$q" "$n" "$(ratio "$t" "$q")" "$(ratio "$t" "$n")"
	unset -n A
done

#!/usr/bin/env bash
# bench/compare.sh: tern against Mosquitto and nats-server, side by side on this machine, with the
# same load tool (`tern bench`, MQTT 3.1.1, 128-byte payloads) where they speak MQTT.
#
#   A  QoS 0, 1 publisher -> 1 subscriber, as fast as possible      delivered msg/s
#   B  QoS 1, 1 -> 1, as fast as possible                           delivered msg/s
#   C  QoS 0, 1 -> 50 subscribers, as fast as possible              delivered msg/s
#   D  QoS 0, 1 -> 1 at a fixed 10,000 msg/s                        latency p50 p99 p99.9 (µs)
#   E  durable QoS 1, 1 publisher -> 1 persistent subscriber        delivered msg/s
#   F  durable QoS 1, 10 publishers -> 1 persistent subscriber      delivered msg/s
#
# A-D run against memory-only brokers (nats: its MQTT port). E and F run against a second,
# durable instance of each: tern with a data directory and --sync always (fsync before every
# acknowledgement); Mosquitto with persistence on and its default autosave (no fsync per
# message); both with session queues of up to 1,000,000 messages, so that F (10 publishers
# outrunning 1 subscriber) measures the store and not the default queue limits' drops (set
# DURABLE_MAX_QUEUED to change that). For nats, JetStream file storage measured by natscli's
# `nats bench js pub async` (same message count and size), whose figure is a publish rate,
# acknowledged by JetStream after its write and without fsync by default. natscli is found or
# built by ensure_natscli (see bench/lib.sh); without it JetStream is skipped.
#
# Every broker runs on 127.0.0.1 on a free port; runs alternate between brokers for R rounds per
# scenario, and the table shows medians and the ratios tern/mosquitto and tern/nats (for rates,
# above 1 means tern is faster; for latency, below 1 means tern is quicker). Raw output of every
# run and the table go to bench/results/compare-<time>/.
#
# Usage: bench/compare.sh [--rounds N] [--quick] [--only tern|mosquitto|nats[,...]]
#                         [--scenarios A,B,...] [--tern-memory]
#   --tern-memory  run E and F's tern without a data directory (a dry run of the script when
#                  the durable store is not available; its figures are not durable ones)
set -euo pipefail

ROUNDS=3
QUICK=0
ONLY=""
PICK=""
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
	--rounds=*) ROUNDS=${1#*=}; shift ;;
	--quick) QUICK=1; shift ;;
	--only) ONLY=${2:?--only needs a broker name}; shift 2 ;;
	--only=*) ONLY=${1#*=}; shift ;;
	--scenarios) PICK=${2:?--scenarios needs a list such as A,B,E}; shift 2 ;;
	--scenarios=*) PICK=${1#*=}; shift ;;
	--tern-memory) export TERN_MEMORY=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds must be a positive number" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-compare.XXXXXX")
export DURABLE_MAX_QUEUED=${DURABLE_MAX_QUEUED:-1000000}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

BROKERS=(tern mosquitto nats)
if [[ -n $ONLY ]]; then
	IFS=, read -r -a BROKERS <<<"$ONLY"
	for b in "${BROKERS[@]}"; do
		[[ $b == tern || $b == mosquitto || $b == nats ]] || die "--only: unknown broker $b"
	done
fi
SCENARIOS=(A B C D E F)
if [[ -n $PICK ]]; then
	IFS=, read -r -a SCENARIOS <<<"${PICK^^}"
	for s in "${SCENARIOS[@]}"; do
		[[ $s =~ ^[A-F]$ ]] || die "--scenarios: unknown scenario $s (A to F)"
	done
fi

# Message counts: every run is bounded by -n and -d. E and F count per publisher.
if ((QUICK)); then
	N_A=50000 N_B=20000 N_C=2000 N_D=20000 N_E=10000 N_F=2000 WARM=200
else
	N_A=1000000 N_B=200000 N_C=20000 N_D=100000 N_E=100000 N_F=20000 WARM=1000
fi
declare -A DESC=(
	[A]="A  QoS0 1->1 max rate"
	[B]="B  QoS1 1->1 max rate"
	[C]="C  QoS0 1->50 max rate"
	[D]="D  QoS0 1->1 @10k msg/s"
	[E]="E  durable QoS1 1->1"
	[F]="F  durable QoS1 10->1"
)
declare -A ARGS=(
	[A]="-q 0 -p 1 -s 1 -n $N_A -d 30s --warmup $WARM"
	[B]="-q 1 -p 1 -s 1 -n $N_B -d 30s --warmup $WARM"
	[C]="-q 0 -p 1 -s 50 -n $N_C -d 30s --warmup $((WARM / 10))"
	[D]="-q 0 -p 1 -s 1 --rate 10000 -n $N_D -d 20s --warmup $WARM"
	[E]="-q 1 -p 1 -s 1 -n $N_E -d 30s --warmup $WARM --persistent"
	[F]="-q 1 -p 10 -s 1 -n $N_F -d 30s --warmup $((WARM / 10)) --persistent"
)
# JetStream's counterpart of E and F: clients, and messages in all.
declare -A JS_CLIENTS=([E]=1 [F]=10)
declare -A JS_MSGS=([E]=$N_E [F]=$((10 * N_F)))

durable() { [[ $1 == E || $1 == F ]]; }
has() { local x; for x in "${BROKERS[@]}"; do [[ $x == "$1" ]] && return 0; done; return 1; }
wants() { local x; for x in "${SCENARIOS[@]}"; do [[ $x == "$1" ]] && return 0; done; return 1; }
WANT_MEM=0 WANT_DURABLE=0
for s in "${SCENARIOS[@]}"; do
	if durable "$s"; then WANT_DURABLE=1; else WANT_MEM=1; fi
done

# server SCENARIO BROKER: the server process that scenario runs against.
server() {
	if durable "$1"; then
		case $2 in
		tern) echo tern_durable ;;
		mosquitto) echo mosquitto_durable ;;
		nats) echo nats ;;
		esac
	else
		echo "$2"
	fi
}

raise_nofile
build_tern
for b in "${BROKERS[@]}"; do
	[[ $b != tern ]] && { ensure_peers; break; }
done
NATSCLI=""
if has nats && ((WANT_DURABLE)); then
	ensure_natscli
	[[ -z $NATSCLI ]] && log "JetStream (E, F) skipped: no natscli with 'nats bench js pub async'"
fi

OUT="$ROOT/bench/results/compare-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
{
	echo "date: $(date -Is)"
	echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "tern: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown) (+ working tree)"
	[[ -n ${MOSQUITTO:-} ]] && echo "mosquitto: $("$MOSQUITTO" -h 2>&1 | head -n1)"
	[[ -n ${NATS:-} ]] && echo "nats-server: $("$NATS" --version 2>&1)"
	[[ -n $NATSCLI ]] && echo "natscli: $NATSCLI ($("$NATSCLI" --version 2>&1 | head -n1))"
	echo "scenarios: ${SCENARIOS[*]}"
	if ((WANT_DURABLE)); then
		has tern && echo "E/F tern: $(tern_durable_desc)"
		has mosquitto && echo "E/F mosquitto: persistence true, default autosave_interval 1800 s (no fsync per message)"
		echo "E/F queues (tern, mosquitto): $(queue_limit_desc)"
		echo "E/F stores on: $(work_fs)"
		if has nats; then
			if [[ -n $NATSCLI ]]; then
				echo "E/F nats: JetStream file storage, nats bench js pub async (acknowledged after its write, no fsync by default)"
			else
				echo "E/F nats: skipped (no natscli)"
			fi
		fi
	fi
	echo "rounds: $ROUNDS$( ((QUICK)) && echo ' (quick)')"
} | tee "$OUT/info.txt" >&2

for b in "${BROKERS[@]}"; do
	if ((WANT_MEM)) || [[ $b == nats && -n $NATSCLI ]]; then
		start_broker "$b"
		log "$b listening on 127.0.0.1:${BROKER_PORT[$b]} (pid ${BROKER_PID[$b]})"
	fi
	if ((WANT_DURABLE)) && [[ $b != nats ]]; then
		start_broker "${b}_durable"
		log "${b}_durable listening on 127.0.0.1:${BROKER_PORT[${b}_durable]} (pid ${BROKER_PID[${b}_durable]})"
	fi
done

# run_js SCENARIO ROUND: the JetStream figure of a durable scenario, kept as JSON under $OUT.
run_js() {
	local s=$1 r=$2 f="$OUT/$1-nats-$2.json" rate
	if rate=$(js_pub_rate "$s" "${JS_CLIENTS[$s]}" "${JS_MSGS[$s]}" "$f.out"); then
		printf '{"js_publish_msgs_per_s": %s, "clients": %s, "msgs": %s}\n' "$rate" "${JS_CLIENTS[$s]}" "${JS_MSGS[$s]}" >"$f"
		log "  $s nats round $r: JetStream async publish $rate msg/s (${JS_CLIENTS[$s]} clients, ${JS_MSGS[$s]} msgs)"
	else
		log "  $s nats round $r failed: $(tail -n1 "$f.out")"
	fi
}

# run_one SCENARIO BROKER ROUND: one bounded bench run, JSON kept under $OUT.
run_one() {
	local s=$1 b=$2 r=$3 f="$OUT/$1-$2-$3.json" srv
	if durable "$s" && [[ $b == nats ]]; then
		[[ -n $NATSCLI ]] && run_js "$s" "$r"
		return 0
	fi
	srv=$(server "$s" "$b")
	# shellcheck disable=SC2086 # ARGS holds several flags
	if ! timeout 180 "$TERN" bench --url "mqtt://127.0.0.1:${BROKER_PORT[$srv]}" ${ARGS[$s]} \
		--topic "bench/$s" --json >"$f" 2>"$f.err"; then
		log "  $s $b round $r failed: $(tail -n1 "$f.err")"
		rm -f "$f"
	fi
	if ! kill -0 "${BROKER_PID[$srv]}" 2>/dev/null; then
		log "  $srv died during $s round $r; restarting it"
		tail -n 20 "$WORK/$srv.log" >&2 || true
		stop_broker "$srv"
		start_broker "$srv"
	fi
	if [[ -f $f ]]; then
		log "  $s $b round $r: delivered $(jget "$f" delivered_msgs_per_s | cut -d. -f1) msg/s," \
			"lost $(jget "$f" lost), dup $(jget "$f" duplicates), p50 $(jget "$f" p50) µs, p99 $(jget "$f" p99) µs"
	fi
}

for s in "${SCENARIOS[@]}"; do
	log "scenario ${DESC[$s]}: tern bench ${ARGS[$s]}"
	for r in $(seq 1 "$ROUNDS"); do
		for b in "${BROKERS[@]}"; do
			run_one "$s" "$b" "$r"
		done
	done
done

# med SCENARIO BROKER KEY: the median of KEY over the rounds that ran (NA for none).
med() {
	local f
	for f in "$OUT/$1-$2-"*.json; do
		[[ -f $f ]] || continue
		jget "$f" "$3"
	done | median
}
# worst SCENARIO BROKER KEY: the largest value of KEY over the rounds (empty for none).
worst() {
	local f
	for f in "$OUT/$1-$2-"*.json; do
		[[ -f $f ]] || continue
		jget "$f" "$3"
	done | sort -g | tail -n1
}

# fmtnum VALUE DECIMALS: a number rounded for the table, or NA.
fmtnum() { awk -v v="$1" -v d="$2" 'BEGIN { if (v == "NA" || v == "") print "NA"; else printf "%.*f", d, v }'; }

# row SCENARIO LABEL KEY DECIMALS REDUCER [NATS_KEY]: one line of the table; NATS_KEY, when
# given, is what the nats column shows instead of KEY ("-" for nothing).
row() {
	local s=$1 label=$2 key=$3 dec=$4 red=$5 nkey=${6:-$3} v b k
	local -A val=()
	for b in tern mosquitto nats; do
		v="" k=$key
		[[ $b == nats ]] && k=$nkey
		has "$b" && [[ $k != - ]] && v=$($red "$s" "$b" "$k")
		val[$b]=$(fmtnum "$v" "$dec")
	done
	printf '%-26s %-16s %12s %12s %12s %10s %10s\n' "${DESC[$s]}" "$label" \
		"${val[tern]}" "${val[mosquitto]}" "${val[nats]}" \
		"$(ratio "${val[tern]}" "${val[mosquitto]}")" "$(ratio "${val[tern]}" "${val[nats]}")"
}

table() {
	local s
	printf '%-26s %-16s %12s %12s %12s %10s %10s\n' scenario metric tern mosquitto nats tern/mosq tern/nats
	printf '%-26s %-16s %12s %12s %12s %10s %10s\n' -------- ------ ---- --------- ---- --------- ---------
	for s in "${SCENARIOS[@]}"; do
		case $s in
		A | B | C)
			row "$s" "delivered msg/s" delivered_msgs_per_s 0 med
			row "$s" "lost (worst)" lost 0 worst
			row "$s" "p50 µs" p50 1 med
			;;
		D)
			row D "p50 µs" p50 1 med
			row D "p99 µs" p99 1 med
			row D "p99.9 µs" p99_9 1 med
			row D "delivered msg/s" delivered_msgs_per_s 0 med
			row D "lost (worst)" lost 0 worst
			;;
		E | F)
			row "$s" "delivered msg/s" delivered_msgs_per_s 0 med js_publish_msgs_per_s
			row "$s" "published msg/s" publish_msgs_per_s 0 med js_publish_msgs_per_s
			row "$s" "lost (worst)" lost 0 worst -
			row "$s" "p50 µs" p50 1 med -
			;;
		esac
	done
}

echo
echo "medians of $ROUNDS round(s); rates: higher is better; latency: lower is better"
{
	table
	if ((WANT_DURABLE)); then
		echo
		echo "E/F columns: delivered msg/s to a persistent session (and acknowledged publishes per second) for"
		has tern && echo "  tern: $(tern_durable_desc);"
		has mosquitto && echo "  mosquitto: persistence true, default autosave (written every 1800 s and at exit, no fsync per message);"
		echo "  queues: $(queue_limit_desc);"
		if has nats && [[ -n $NATSCLI ]]; then
			echo "  nats: JetStream file-storage publish msg/s from 'nats bench js pub async' (${JS_CLIENTS[E]} and ${JS_CLIENTS[F]} clients,"
			echo "        same message count and size), acknowledged after JetStream's write, without fsync by default"
			echo "        (sync_interval 2 min); no delivery measured."
		elif has nats; then
			echo "  nats: not measured (no natscli)."
		fi
	fi
} | tee "$OUT/table.txt"
echo
echo "results: $OUT"

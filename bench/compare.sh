#!/usr/bin/env bash
# bench/compare.sh: tern against Mosquitto and nats-server's MQTT port, side by side on this
# machine, with the same load tool (`tern bench`, MQTT 3.1.1, 128-byte payloads).
#
#   A  QoS 0, 1 publisher -> 1 subscriber, as fast as possible      delivered msg/s
#   B  QoS 1, 1 -> 1, as fast as possible                           delivered msg/s
#   C  QoS 0, 1 -> 50 subscribers, as fast as possible              delivered msg/s
#   D  QoS 0, 1 -> 1 at a fixed 10,000 msg/s                        latency p50 p99 p99.9 (µs)
#
# Every broker runs on 127.0.0.1 on a free port; runs alternate between brokers for R rounds per
# scenario, and the table shows medians and the ratios tern/mosquitto and tern/nats (for rates,
# above 1 means tern is faster; for latency, below 1 means tern is quicker). Raw JSON of every
# run and the table go to bench/results/compare-<time>/.
#
# Usage: bench/compare.sh [--rounds N] [--quick] [--only tern|mosquitto|nats[,...]]
set -euo pipefail

ROUNDS=3
QUICK=0
ONLY=""
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
	--rounds=*) ROUNDS=${1#*=}; shift ;;
	--quick) QUICK=1; shift ;;
	--only) ONLY=${2:?--only needs a broker name}; shift 2 ;;
	--only=*) ONLY=${1#*=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds must be a positive number" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-compare.XXXXXX")
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

# Message counts: every run is bounded by -n and -d.
if ((QUICK)); then
	N_A=50000 N_B=20000 N_C=2000 N_D=20000 WARM=200
else
	N_A=1000000 N_B=200000 N_C=20000 N_D=100000 WARM=1000
fi
declare -A DESC=(
	[A]="A  QoS0 1->1 max rate"
	[B]="B  QoS1 1->1 max rate"
	[C]="C  QoS0 1->50 max rate"
	[D]="D  QoS0 1->1 @10k msg/s"
)
declare -A ARGS=(
	[A]="-q 0 -p 1 -s 1 -n $N_A -d 30s --warmup $WARM"
	[B]="-q 1 -p 1 -s 1 -n $N_B -d 30s --warmup $WARM"
	[C]="-q 0 -p 1 -s 50 -n $N_C -d 30s --warmup $((WARM / 10))"
	[D]="-q 0 -p 1 -s 1 --rate 10000 -n $N_D -d 20s --warmup $WARM"
)
SCENARIOS=(A B C D)

raise_nofile
build_tern
for b in "${BROKERS[@]}"; do
	[[ $b != tern ]] && { ensure_peers; break; }
done

OUT="$ROOT/bench/results/compare-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
{
	echo "date: $(date -Is)"
	echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "tern: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown) (+ working tree)"
	[[ -n ${MOSQUITTO:-} ]] && echo "mosquitto: $("$MOSQUITTO" -h 2>&1 | head -n1)"
	[[ -n ${NATS:-} ]] && echo "nats-server: $("$NATS" --version 2>&1)"
	echo "rounds: $ROUNDS$( ((QUICK)) && echo ' (quick)')"
} | tee "$OUT/info.txt" >&2

for b in "${BROKERS[@]}"; do
	start_broker "$b"
	log "$b listening on 127.0.0.1:${BROKER_PORT[$b]} (pid ${BROKER_PID[$b]})"
done

# run_one SCENARIO BROKER ROUND: one bounded bench run, JSON kept under $OUT.
run_one() {
	local s=$1 b=$2 r=$3 f="$OUT/$1-$2-$3.json"
	# shellcheck disable=SC2086 # ARGS holds several flags
	if ! timeout 180 "$TERN" bench --url "mqtt://127.0.0.1:${BROKER_PORT[$b]}" ${ARGS[$s]} \
		--topic "bench/$s" --json >"$f" 2>"$f.err"; then
		log "  $s $b round $r failed: $(tail -n1 "$f.err")"
		rm -f "$f"
	fi
	if ! kill -0 "${BROKER_PID[$b]}" 2>/dev/null; then
		log "  $b died during $s round $r; restarting it"
		tail -n 20 "$WORK/$b.log" >&2 || true
		stop_broker "$b"
		start_broker "$b"
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

# med SCENARIO BROKER KEY: the median of KEY over the rounds that ran.
med() {
	local f
	for f in "$OUT/$1-$2-"*.json; do
		[[ -f $f ]] && jget "$f" "$3"
	done | median
}
# worst SCENARIO BROKER KEY: the largest value of KEY over the rounds.
worst() {
	local f
	for f in "$OUT/$1-$2-"*.json; do
		[[ -f $f ]] && jget "$f" "$3"
	done | sort -g | tail -n1
}

has() { local x; for x in "${BROKERS[@]}"; do [[ $x == "$1" ]] && return 0; done; return 1; }

# fmtnum VALUE DECIMALS: a number rounded for the table, or NA.
fmtnum() { awk -v v="$1" -v d="$2" 'BEGIN { if (v == "NA" || v == "") print "NA"; else printf "%.*f", d, v }'; }

# row SCENARIO LABEL KEY DECIMALS REDUCER: one line of the table.
row() {
	local s=$1 label=$2 key=$3 dec=$4 red=$5 v b
	local -A val=()
	for b in tern mosquitto nats; do
		v=""
		has "$b" && v=$($red "$s" "$b" "$key")
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
	for s in A B C; do
		row "$s" "delivered msg/s" delivered_msgs_per_s 0 med
		row "$s" "lost (worst)" lost 0 worst
		row "$s" "p50 µs" p50 1 med
	done
	row D "p50 µs" p50 1 med
	row D "p99 µs" p99 1 med
	row D "p99.9 µs" p99_9 1 med
	row D "delivered msg/s" delivered_msgs_per_s 0 med
	row D "lost (worst)" lost 0 worst
}

echo
echo "medians of $ROUNDS round(s); rates: higher is better; latency: lower is better"
table | tee "$OUT/table.txt"
echo
echo "results: $OUT"

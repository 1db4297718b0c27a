#!/usr/bin/env bash
# bench/connections.sh: many connections to tern, Mosquitto and nats-server (MQTT 3.1.1, TCP and TLS),
# side by side in one run, with the same load tool (`tern bench --idle-conns`):
#
#   idle     memory per idle connection: RSS (VmRSS) before and after N connections, each
#            subscribed to its own topic, keep alive 60 s (pinged every 30 s), sit idle; read
#            2 s after they are all open and again S seconds later ("settled": a broker may give
#            memory back once quiet; tern does after memory.idle_after, 10 s by default)
#   storm    the same N connections opened 128 at a time: connections per second (CONNECT,
#            CONNACK, SUBSCRIBE, SUBACK each), CONNECT to CONNACK p50/p99, and the broker's
#            CPU time per connection opened (user and system, from /proc: the load tool on the
#            same cores often limits the rate, this shows what each connection costs the
#            broker); again with persistent sessions (clean session 0)
#   tls      the storm over MQTT over TLS (each broker with only a TLS listener, a `tern cert`
#            server certificate): full handshakes, then resumed ones (--tls-resume: the load
#            tool shares one TLS session cache, primed by one connection before the storm, as
#            devices reconnecting with the session ticket they kept), each with clean and with
#            persistent sessions; connections/s, CONNECT to CONNACK p50/p99, the handshake
#            (TCP connect + TLS) p99, how many handshakes resumed, memory per idle TLS
#            connection and a fan-out to all of them at QoS 0 (the full, clean run). The load tool offers only the key exchange
#            --tls-groups names (default x25519, which all three negotiate; Go's own default
#            offers the post-quantum X25519MLKEM768 first, which tern, built with a current Go,
#            takes and the peers' TLS libraries cannot: `--tls-groups default` measures that);
#            the table names the key exchange each broker negotiated
#   big      BIG connections (default 100,000) over several loopback source addresses
#            (127.0.0.1, .2, ...; one address reaches one port from fewer than 64k ports): time
#            to open them all, memory per connection (each has two subscriptions: its own topic
#            and the fan-out topic), and a fan-out 1 -> BIG at QoS 0: time until the last
#            connection has the message (seen by sweeping the connections with non-blocking
#            reads, so late by at most one sweep; the sweep time is printed); memory is read
#            as for idle, the settled reading after the fan-out
#
# Each broker is started fresh on 127.0.0.1 for each part and stopped by PID. The broker and the
# load tool each need a descriptor per connection: the script raises the open files limit
# (ulimit -n) as far as the hard limit allows and, when that is below what BIG needs, lowers BIG
# to fit and says so. Every load run is bounded by timeout. The table shows the figures and the
# ratios tern/mosquitto and tern/nats (below 1: tern uses less memory or time; above 1 for rates:
# tern is faster). Results go to bench/results/connections-<time>/.
#
# Usage: bench/connections.sh [--conns N] [--big N] [--only tern|mosquitto|nats[,...]]
#                             [--parts idle,storm,tls,big] [--tls-groups x25519|default|LIST]
#                             [--settle S]
#   BENCH_TERN_BIN=/path/to/tern measures that tern binary (an earlier build) instead of this
#   tree's; the load tool is always this tree's.
set -euo pipefail

CONNS=5000
BIG=100000
ONLY=""
PARTS="idle,storm,tls,big"
TLS_GROUPS=x25519
SETTLE=15
usage() { sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	--conns) CONNS=${2:?}; shift 2 ;;
	--big) BIG=${2:?}; shift 2 ;;
	--only) ONLY=${2:?}; shift 2 ;;
	--parts) PARTS=${2:?}; shift 2 ;;
	--tls-groups) TLS_GROUPS=${2:?}; shift 2 ;;
	--settle) SETTLE=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || { echo "--conns must be a positive number" >&2; exit 2; }
[[ $BIG =~ ^[1-9][0-9]*$ ]] || { echo "--big must be a positive number" >&2; exit 2; }
[[ $SETTLE =~ ^[0-9]+$ ]] || { echo "--settle is whole seconds (0: no settled reading)" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-conns.XXXXXX")
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
part() { [[ ,$PARTS, == *,$1,* ]]; }

# Descriptors: each process holds one per connection, plus some.
want=$((BIG + 1024))
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
NOTE=""
if part big && ((limit < want)); then
	fit=$((limit - 1024))
	NOTE="open files limited to $limit here (hard limit; raising it needs CAP_SYS_RESOURCE): big part at $fit connections instead of $BIG"
	log "$NOTE"
	BIG=$fit
fi
if ((CONNS + 1024 > limit)); then
	die "--conns $CONNS needs an open files limit above $((CONNS + 1024)); it is $limit"
fi
# Source addresses: 50,000 connections per address at most (the ephemeral range is ~28k ports
# per destination by default; Linux reuses a port for another destination or source).
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
per=$(((hi - lo) * 9 / 10))
SOURCES=$(((BIG + per - 1) / per))
((SOURCES < 1)) && SOURCES=1

build_tern
for b in "${BROKERS[@]}"; do
	[[ $b != tern ]] && { ensure_peers; break; }
done
OUT="$ROOT/bench/results/connections-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
{
	echo "date: $(date -Is)"
	echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "tern: $TERN_SERVER ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown) tree)"
	[[ -n ${MOSQUITTO:-} ]] && echo "mosquitto: $("$MOSQUITTO" -h 2>&1 | head -n1)"
	[[ -n ${NATS:-} ]] && echo "nats-server: $("$NATS" --version 2>&1)"
	echo "open files limit: $limit; connections: $CONNS (idle, storm), $BIG over $SOURCES source address(es) (big)"
	if [[ -n $NOTE ]]; then echo "note: $NOTE"; fi
} | tee "$OUT/info.txt" >&2

declare -A VAL=() GROUP=()

# idle_run BROKER TAG N HOLD SETTLE ARGS...: start BROKER fresh, read its RSS, open N idle
# connections (tern bench --idle-conns, with ARGS), read the RSS 2 s after they are all open and,
# unless SETTLE is 0, SETTLE seconds later (HOLD must outlast that), wait for the run to end,
# stop BROKER. Sets VAL[TAG-BROKER-kib] and VAL[TAG-BROKER-settled] (KiB per connection),
# VAL[TAG-BROKER-cpu] (the broker's CPU time, user and system, per connection opened, in µs,
# from the start of the run to its ready line) and keeps the run's JSON in $OUT/TAG-BROKER.json.
idle_run() {
	local b=$1 tag=$2 n=$3 hold=$4 settle=$5 pid before after out cpu0
	shift 5
	start_broker "$b"
	pid=${BROKER_PID[$b]}
	sleep 1 # let it finish starting before the baseline
	before=$(rss_kib "$pid")
	cpu0=$(cpu_ms "$pid")
	out="$OUT/$tag-$b"
	local url=(--url "mqtt://127.0.0.1:${BROKER_PORT[$b]}")
	[[ $b == *_tls ]] && url=(--url "mqtts://127.0.0.1:${BROKER_PORT[$b]}" --cafile "$WORK/tls/ca.crt")
	timeout 900 "$TERN" bench "${url[@]}" --idle-conns "$n" --hold "$hold" \
		--keep-alive 60 --json "$@" >"$out.out" 2>"$out.err" &
	BENCH_PID=$!
	local ready=0
	for _ in $(seq 1 6000); do
		if grep -qs '^ready:' "$out.out"; then ready=1; break; fi
		kill -0 "$BENCH_PID" 2>/dev/null || break
		sleep 0.1
	done
	if ((ready)); then
		VAL[$tag-$b-cpu]=$(awk -v a="$(cpu_ms "$pid")" -v s="$cpu0" -v n="$n" 'BEGIN { printf "%.1f", (a - s) * 1000 / n }')
		sleep 2 # let the broker settle with the connections idle
		after=$(rss_kib "$pid")
		VAL[$tag-$b-kib]=$(awk -v a="$after" -v s="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - s) / n }')
		log "$tag $b: $(grep '^ready:' "$out.out"); RSS $before -> $after KiB"
		if ((settle > 0)); then
			sleep "$settle"
			if kill -0 "$BENCH_PID" 2>/dev/null; then
				after=$(rss_kib "$pid")
				VAL[$tag-$b-settled]=$(awk -v a="$after" -v s="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - s) / n }')
				log "$tag $b: settled RSS $after KiB"
			fi
		fi
	else
		log "$tag $b: the connections did not all open: $(tail -n2 "$out.out" "$out.err" | tr '\n' ' ')"
	fi
	wait "$BENCH_PID" 2>/dev/null || log "$tag $b: load run failed: $(tail -n1 "$out.err")"
	BENCH_PID=""
	grep -v '^ready:' "$out.out" >"$out.json" || true
	stop_broker "$b"
}

for b in "${BROKERS[@]}"; do
	if part idle || part storm; then
		idle_run "$b" idle "$CONNS" "$((SETTLE + 10))s" "$SETTLE" --concurrency 128
		VAL[idle-$b-rate]=$(jget "$OUT/idle-$b.json" connects_per_s)
		VAL[idle-$b-p50]=$(jget "$OUT/idle-$b.json" connack_p50_us)
		VAL[idle-$b-p99]=$(jget "$OUT/idle-$b.json" connack_p99_us)
	fi
	if part storm; then
		idle_run "$b" persistent "$CONNS" 2s 0 --concurrency 128 --persistent
		VAL[persistent-$b-rate]=$(jget "$OUT/persistent-$b.json" connects_per_s)
		VAL[persistent-$b-p50]=$(jget "$OUT/persistent-$b.json" connack_p50_us)
		VAL[persistent-$b-p99]=$(jget "$OUT/persistent-$b.json" connack_p99_us)
	fi
	if part tls; then
		# tag, then tern bench's options: full or resumed handshakes, clean or persistent.
		groups=()
		[[ $TLS_GROUPS != default ]] && groups=(--tls-groups "$TLS_GROUPS")
		# The first run also times a QoS 0 message to all of its connections at the end of its
		# hold (after the memory readings), parked and detached by then.
		for v in "tlsfull --fanout" "tlsresume --tls-resume" "tlspfull --persistent" "tlspresume --tls-resume --persistent"; do
			read -r tag opts <<<"$v"
			hold=2s settle=0
			# The memory figures come from the first run: read 2 s after ready and settled.
			[[ $tag == tlsfull ]] && hold=$((SETTLE + 10))s settle=$SETTLE
			# shellcheck disable=SC2086 # opts is a list of options
			idle_run "${b}_tls" "$tag" "$CONNS" "$hold" "$settle" --concurrency 128 "${groups[@]}" $opts
			VAL[$tag-$b-kib]=${VAL[$tag-${b}_tls-kib]:-}
			VAL[$tag-$b-settled]=${VAL[$tag-${b}_tls-settled]:-}
			GROUP[$b]=$(sed -n 's/.*"tls_group": *"\([^"]*\)".*/\1/p' "$OUT/$tag-${b}_tls.json" | head -n1)
			for k in rate:connects_per_s p50:connack_p50_us p99:connack_p99_us dial:dial_p99_us resumed:tls_resumed fanout:fanout_last_ms got:fanout_received; do
				VAL[$tag-$b-${k%%:*}]=$(jget "$OUT/$tag-${b}_tls.json" "${k#*:}")
			done
		done
	fi
	if part big; then
		idle_run "$b" big "$BIG" "$((SETTLE + 10))s" "$SETTLE" --concurrency 128 --source-addrs "$SOURCES" --fanout
		VAL[big-$b-connect]=$(jget "$OUT/big-$b.json" connect_s)
		VAL[big-$b-fanout]=$(jget "$OUT/big-$b.json" fanout_last_ms)
		VAL[big-$b-sweep]=$(jget "$OUT/big-$b.json" fanout_sweep_ms)
		VAL[big-$b-got]=$(jget "$OUT/big-$b.json" fanout_received)
	fi
done

# row LABEL KEY DECIMALS: one line of the table.
row() {
	local label=$1 key=$2 dec=$3 b v
	local -A f=()
	for b in tern mosquitto nats; do
		v=${VAL[$key-$b-${4:-x}]:-}
		[[ -z $v ]] && v=NA
		f[$b]=$(awk -v v="$v" -v d="$dec" 'BEGIN { if (v == "NA") print "NA"; else printf "%.*f", d, v }')
	done
	printf '%-44s %12s %12s %12s %10s %10s\n' "$label" "${f[tern]}" "${f[mosquitto]}" "${f[nats]}" \
		"$(ratio "${f[tern]}" "${f[mosquitto]}")" "$(ratio "${f[tern]}" "${f[nats]}")"
}

{
	printf '%-44s %12s %12s %12s %10s %10s\n' figure tern mosquitto nats tern/mosq tern/nats
	if part idle || part storm; then
		row "idle KiB/connection ($CONNS)" idle 2 kib
		if ((SETTLE > 0)); then row "  settled, $SETTLE s later" idle 2 settled; fi
		row "storm connections/s ($CONNS, clean)" idle 0 rate
		row "storm CONNECT->CONNACK p50 µs (clean)" idle 0 p50
		row "storm CONNECT->CONNACK p99 µs (clean)" idle 0 p99
		row "storm broker CPU µs/connection (clean)" idle 1 cpu
	fi
	if part storm; then
		row "storm connections/s (persistent)" persistent 0 rate
		row "storm CONNECT->CONNACK p99 µs (persistent)" persistent 0 p99
		row "storm broker CPU µs/connection (persistent)" persistent 1 cpu
	fi
	if part tls; then
		row "TLS idle KiB/connection ($CONNS)" tlsfull 2 kib
		if ((SETTLE > 0)); then row "  settled, $SETTLE s later" tlsfull 2 settled; fi
		row "TLS fan-out 1->$CONNS QoS 0: ms to the last" tlsfull 1 fanout
		row "  connections that had it" tlsfull 0 got
		for v in "tlsfull:full, clean" "tlsresume:resumed, clean" "tlspfull:full, persistent" "tlspresume:resumed, persistent"; do
			tag=${v%%:*} what=${v#*:}
			row "TLS storm connections/s ($what)" "$tag" 0 rate
			row "  CONNECT->CONNACK p50 µs" "$tag" 0 p50
			row "  CONNECT->CONNACK p99 µs" "$tag" 0 p99
			row "  TCP connect + TLS handshake p99 µs" "$tag" 0 dial
			if [[ $tag == *resume ]]; then row "  handshakes resumed (of $CONNS)" "$tag" 0 resumed; fi
		done
		printf '%-44s %12s %12s %12s\n' "  key exchange (offered: $TLS_GROUPS)" "${GROUP[tern]:-NA}" "${GROUP[mosquitto]:-NA}" "${GROUP[nats]:-NA}"
	fi
	if part big; then
		row "$BIG connections: KiB/connection" big 2 kib
		if ((SETTLE > 0)); then row "  settled, $SETTLE s later" big 2 settled; fi
		row "$BIG connections: seconds to open all" big 1 connect
		row "fan-out 1->$BIG QoS 0: ms to the last" big 1 fanout
		row "  connections that had it" big 0 got
		row "  sweep ms (resolution of the fan-out)" big 1 sweep
	fi
	if [[ -n $NOTE ]]; then echo "note: $NOTE"; fi
} | tee "$OUT/table.txt"
echo "results: $OUT"

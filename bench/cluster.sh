#!/usr/bin/env bash
# bench/cluster.sh: a 3-node tern cluster on this machine against a single tern node, and the same
# scenarios on a 3-node NATS cluster (routes, JetStream R3 behind its MQTT listener), in one run.
#
#   rates    `tern bench`, 128-byte payloads, 1 publisher -> 1 subscriber, as fast as possible,
#            delivered msg/s:
#              single  tern, one node: publisher and subscriber on it
#              cross   tern cluster: publisher on node 1, subscriber on node 2
#              nats    nats-server cluster: publisher on server 1's MQTT port, subscriber on 2's
#            QoS 0 with clean sessions; QoS 1 with a persistent subscriber (tern: MQTT 5, Clean
#            Start 0, Session Expiry 1 h, so its queue is replicated in the cluster; nats: MQTT
#            3.1.1, Clean Session 0, the only version its MQTT face speaks).
#   failover bench/failoverload (MQTT 3.1.1 for both): QoS 1 publishers on every node (2 each,
#            at most 100 msg/s each, each waiting for its PUBACK) and a persistent QoS 1
#            subscriber on a survivor; kill -9 of the leader (tern: the leader of /v1/cluster;
#            nats: the JetStream meta leader of /jsz); a probe on a survivor publishes QoS 1 in a
#            loop, 250 ms per attempt, until the first PUBACK: that time after the kill, and the
#            count of acknowledged messages that never reached the subscriber (lost).
#
# Every tern node has a data directory and its cluster listener on 127.0.0.N; every nats server a
# store directory; all under one temp dir. Every process listens on loopback only and is stopped
# by PID at the end. nats-server: a current one built with go install into the bench cache (as
# bench/compare.sh does for natscli), else Debian's. Raw output goes to bench/results/cluster-<time>/.
#
# Usage: bench/cluster.sh [--rounds N] [--count N] [--count1 N] [--fail-for D] [--only tern|nats]
#                         [--parts qos0,qos1,failover]
#   --only and --parts run a part of it (a short before/after check): one broker, some scenarios.
set -euo pipefail

ROUNDS=1
COUNT=200000
COUNT1=20000
FAIL_FOR=20s
NATS_VERSION=${NATS_VERSION:-v2.15.3}
ONLY=all
PARTS=qos0,qos1,failover
while (($#)); do
	case $1 in
	--rounds) ROUNDS=${2:?}; shift 2 ;;
	--count) COUNT=${2:?}; shift 2 ;;
	--count1) COUNT1=${2:?}; shift 2 ;;
	--fail-for) FAIL_FOR=${2:?}; shift 2 ;;
	--only) ONLY=${2:?}; shift 2 ;;
	--parts) PARTS=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $COUNT =~ ^[1-9][0-9]*$ && $COUNT1 =~ ^[1-9][0-9]*$ ]] ||
	{ echo "--rounds, --count and --count1 take positive numbers" >&2; exit 2; }
[[ $ONLY =~ ^(all|tern|nats)$ ]] || { echo "--only takes tern or nats" >&2; exit 2; }
[[ ,$PARTS, =~ ^,((qos0|qos1|failover),)+$ ]] || { echo "--parts takes a comma list of qos0, qos1, failover" >&2; exit 2; }
# want BROKER PART: whether this run includes it.
want() { [[ ($ONLY == all || $ONLY == "$1") && ,$PARTS, == *",$2,"* ]]; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-cluster.XXXXXX")
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
OUT="$ROOT/bench/results/cluster-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
raise_nofile
build_tern
(cd "$ROOT" && go build -o "$WORK/failoverload" ./bench/failoverload) || die "go build failoverload failed"

# ensure_nats: a current nats-server (go install into the bench cache, outside the repository),
# else Debian's.
ensure_nats() {
	local cache="${XDG_CACHE_HOME:-$HOME/.cache}/tern-bench"
	if [[ -x $cache/bin/nats-server ]]; then NATS=$cache/bin/nats-server; return 0; fi
	mkdir -p "$cache/bin"
	log "building nats-server $NATS_VERSION into $cache/bin (log: $cache/nats-build.log)..."
	if (cd "$cache" && GOBIN="$cache/bin" GOFLAGS=-buildvcs=false timeout 1200 \
		go install "github.com/nats-io/nats-server/v2@$NATS_VERSION") >"$cache/nats-build.log" 2>&1; then
		NATS=$cache/bin/nats-server
		return 0
	fi
	log "could not build nats-server; using Debian's"
	if ! NATS=$(find_bin nats-server); then
		local sudo=""
		[[ $(id -u) -ne 0 ]] && sudo="sudo"
		$sudo apt-get install -y nats-server >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y nats-server >/dev/null; } ||
			die "could not install nats-server"
		NATS=$(find_bin nats-server) || die "nats-server not found"
	fi
}
NATS=""
if want nats qos0 || want nats qos1 || want nats failover; then ensure_nats; fi

# ---- tern ----
declare -A MQTT=() HTTPA=() CLUSTER=()

# start_node I [JOIN [TRY]]: tern cluster node nI on 127.0.0.I, data in $WORK/nI.
start_node() {
	local i=$1 join=() port http cport
	port=$(free_port)
	http=$(free_port)
	cport=$(free_port)
	[[ -n ${2:-} ]] && join=(--join "$2")
	mkdir -p "$WORK/n$i"
	"$TERN_SERVER" serve --node-id "n$i" --cluster-listen "127.0.0.$i:$cport" --mqtt "127.0.0.1:$port" \
		--http "127.0.0.1:$http" --unix "" --data-dir "$WORK/n$i" --log-level warn "${join[@]}" >>"$WORK/n$i.log" 2>&1 &
	BROKER_PID[n$i]=$!
	BROKER_PORT[n$i]=$port
	MQTT[n$i]=$port
	HTTPA[n$i]=127.0.0.1:$http
	CLUSTER[n$i]=127.0.0.$i:$cport
	# A joining node opens its MQTT listener once it has joined and caught up.
	for _ in $(seq 1 600); do
		port_open "$port" && return 0
		if ! kill -0 "${BROKER_PID[n$i]}" 2>/dev/null; then
			# free_port's port can be taken by another process before tern binds it: retry.
			if grep -q "address already in use" "$WORK/n$i.log" && ((${3:-0} < 3)); then
				rm -rf "$WORK/n$i" "$WORK/n$i.log"
				start_node "$i" "${2:-}" $((${3:-0} + 1))
				return
			fi
			cat "$WORK/n$i.log" >&2
			die "n$i exited at start"
		fi
		sleep 0.1
	done
	die "n$i did not open its MQTT port within 60 s"
}

start_single() {
	local port
	port=$(free_port)
	mkdir -p "$WORK/single"
	"$TERN_SERVER" serve --mqtt "127.0.0.1:$port" --http "" --unix "" --data-dir "$WORK/single" --log-level warn >"$WORK/single.log" 2>&1 &
	BROKER_PID[single]=$!
	BROKER_PORT[single]=$port
	wait_port single "$port"
}

# ---- nats ----
declare -A NPORT=()
start_nats_node() {
	local i=$1 routes=$2
	cat >"$WORK/nats$i.conf" <<-EOC
		server_name: nats$i
		listen: 127.0.0.1:${NPORT[c$i]}
		http: 127.0.0.1:${NPORT[h$i]}
		jetstream { store_dir: "$WORK/nats$i-js" }
		mqtt { listen: 127.0.0.1:${NPORT[m$i]}, stream_replicas: 3 }
		cluster {
		  name: bench
		  listen: 127.0.0.1:${NPORT[r$i]}
		  routes: [$routes]
		}
	EOC
	"$NATS" -c "$WORK/nats$i.conf" >"$WORK/nats$i.log" 2>&1 &
	BROKER_PID[nats$i]=$!
}
# nats_meta_leader: the server name of the JetStream meta leader, asked of every live server.
nats_meta_leader() {
	local i l
	for i in 1 2 3; do
		[[ -n ${BROKER_PID[nats$i]:-} ]] || continue
		l=$(curl -s -m 2 "http://127.0.0.1:${NPORT[h$i]}/jsz" | tr -d '\n' |
			sed -n 's/.*"meta_cluster": *{[^}]*"leader": *"\([^"]*\)".*/\1/p')
		[[ -n $l ]] && { echo "$l"; return 0; }
	done
	return 1
}

bench_run() { # NAME QOS ROUND PUBPORT SUBPORT [FLAGS...]
	local name=$1 q=$2 r=$3 pub=$4 sub=$5 f="$OUT/$1-qos$2-r$3.json" n=$COUNT
	shift 5
	((q > 0)) && n=$COUNT1
	"$TERN" bench --url "mqtt://127.0.0.1:$pub" --sub-url "mqtt://127.0.0.1:$sub" -q "$q" -n "$n" --warmup 1000 -d 60s --json "$@" >"$f" 2>"$f.err" || true
	log "  $name QoS $q round $r: delivered $(jget "$f" delivered_msgs_per_s | cut -d. -f1) msg/s, lost $(jget "$f" lost)"
	echo "$(jget "$f" delivered_msgs_per_s)" >>"$OUT/$name-qos$q.rates"
}

if want tern qos0 || want tern qos1 || want tern failover; then
log "tern: single node and a 3-node cluster (load average at start: $LOAD_AT_START)"
start_single
start_node 1
start_node 2 "${CLUSTER[n1]}"
start_node 3 "${CLUSTER[n1]}"
fi

if [[ -n $NATS ]]; then
log "nats ($("$NATS" --version 2>&1 | head -n1)): 3 servers with routes, JetStream and MQTT"
for k in c r m h; do for i in 1 2 3; do NPORT[$k$i]=$(free_port); done; done
for i in 1 2 3; do
	routes=""
	for j in 1 2 3; do ((j != i)) && routes+="nats-route://127.0.0.1:${NPORT[r$j]},"; done
	start_nats_node "$i" "${routes%,}"
done
for i in 1 2 3; do wait_port "nats$i" "${NPORT[m$i]}"; done
# JetStream needs its meta leader before the MQTT face takes sessions.
for _ in $(seq 1 300); do
	nats_meta_leader >/dev/null && break
	sleep 0.1
done
nats_meta_leader >/dev/null || die "nats: no JetStream meta leader within 30 s"
fi

V5=(--mqtt-version 5 --persistent --session-expiry 1h)
for r in $(seq 1 "$ROUNDS"); do
	if want tern qos0; then
		bench_run single 0 "$r" "${BROKER_PORT[single]}" "${BROKER_PORT[single]}"
		bench_run cross 0 "$r" "${MQTT[n1]}" "${MQTT[n2]}"
	fi
	want nats qos0 && bench_run nats 0 "$r" "${NPORT[m1]}" "${NPORT[m2]}"
	if want tern qos1; then
		bench_run single 1 "$r" "${BROKER_PORT[single]}" "${BROKER_PORT[single]}" "${V5[@]}"
		bench_run cross 1 "$r" "${MQTT[n1]}" "${MQTT[n2]}" "${V5[@]}"
	fi
	want nats qos1 && bench_run nats 1 "$r" "${NPORT[m1]}" "${NPORT[m2]}" --persistent
done

# ---- failover ----
# failover NAME LEADER PUBS SUB PROBE: kill -9 of the broker LEADER under load, see failoverload.
failover() {
	local name=$1 l=$2 f="$OUT/failover-$1.json"
	log "failover $name: kill -9 of the leader $l under QoS 1 load for $FAIL_FOR"
	"$WORK/failoverload" -name "$name" -pubs "$3" -sub "$4" -probe "$5" -kill-pid "${BROKER_PID[$l]}" \
		-duration "$FAIL_FOR" -kill-at 5s >"$f" 2>"$f.err" || log "  failoverload failed: $(tail -n1 "$f.err")"
	wait "${BROKER_PID[$l]}" 2>/dev/null || true
	unset "BROKER_PID[$l]"
	log "  $(cat "$f")"
}
survivors() { # LEADER PREFIX: the other two of PREFIX1..3
	local i s=()
	for i in 1 2 3; do [[ $2$i != "$1" ]] && s+=("$2$i"); done
	echo "${s[@]}"
}

if want tern failover; then
	L=$(curl -s "http://${HTTPA[n2]}/v1/cluster" | sed -n 's/.*"leader": *"\([^"]*\)".*/\1/p' | head -n1)
	[[ -n $L && -n ${MQTT[$L]:-} ]] || die "tern: no leader before the kill"
	read -r s1 s2 <<<"$(survivors "$L" n)"
	failover tern "$L" "127.0.0.1:${MQTT[n1]},127.0.0.1:${MQTT[n2]},127.0.0.1:${MQTT[n3]}" "127.0.0.1:${MQTT[$s1]}" "127.0.0.1:${MQTT[$s2]}"
fi

if want nats failover; then
	NL=$(nats_meta_leader) || die "nats: no meta leader before the kill"
	[[ -n ${BROKER_PID[$NL]:-} ]] || die "nats: meta leader $NL is not one of ours"
	read -r s1 s2 <<<"$(survivors "$NL" nats)"
	failover nats "$NL" "127.0.0.1:${NPORT[m1]},127.0.0.1:${NPORT[m2]},127.0.0.1:${NPORT[m3]}" "127.0.0.1:${NPORT[m${s1#nats}]}" "127.0.0.1:${NPORT[m${s2#nats}]}"
fi

# med NAME QOS: the median rate, NA for a part not run; fo NAME KEY: a failover figure or -.
med() { if [[ -f $OUT/$1-qos$2.rates ]]; then median <"$OUT/$1-qos$2.rates"; else echo NA; fi; }
fo() { local v=""; [[ -f $OUT/failover-$1.json ]] && v=$(jget "$OUT/failover-$1.json" "$2"); echo "${v:--}"; }
{
	echo "bench/cluster.sh  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cores, load average at start $LOAD_AT_START  rounds $ROUNDS  QoS 0: $COUNT msgs, QoS 1: $COUNT1 msgs"
	echo "tern $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), ${NATS:+$("$NATS" --version 2>&1 | head -n1)}${NATS:-nats not run}  (--only $ONLY --parts $PARTS)"
	printf '%-8s %14s %14s %14s %12s %12s\n' QoS "tern single" "tern cross" "nats cross" "cross/single" "tern/nats"
	for q in 0 1; do
		s=$(med single $q) c=$(med cross $q) n=$(med nats $q)
		printf '%-8s %14.0f %14.0f %14.0f %12s %12s\n' "$q" "${s/NA/0}" "${c/NA/0}" "${n/NA/0}" "$(ratio "$c" "$s")" "$(ratio "$c" "$n")"
	done
	printf '%-8s %24s %12s %12s %10s %6s %16s\n' failover "first QoS 1 PUBACK (ms)" acknowledged "after kill" delivered lost "publish failures"
	for b in tern nats; do
		printf '%-8s %24s %12s %12s %10s %6s %16s\n' "$b" "$(fo $b first_ack_after_kill_ms)" "$(fo $b acknowledged)" \
			"$(fo $b acknowledged_after_kill)" "$(fo $b delivered)" "$(fo $b lost)" "$(fo $b publish_failures)"
	done
	echo "(first PUBACK: time of the probe's first PUBACK on a survivor, 250 ms per attempt, an upper bound on the outage; -1: none within 60 s)"
} | tee "$OUT/table.txt"

#!/usr/bin/env bash
# bench/cluster.sh: a 3-node tern cluster on this machine against a single tern node, and the same
# cross-node scenario on a 3-node NATS cluster, in one run, with the same load tool (`tern bench`,
# MQTT 3.1.1, 128-byte payloads, 1 publisher -> 1 subscriber, as fast as possible).
#
#   single   tern, one node: publisher and subscriber on it                 delivered msg/s
#   cross    tern cluster: publisher on node 1, subscriber on node 2        delivered msg/s
#   nats     nats-server cluster (routes, JetStream R3 for its MQTT state):
#            publisher on server 1's MQTT port, subscriber on server 2's    delivered msg/s
#   failover kill -9 of the tern cluster's leader: time until a surviving node acknowledges an
#            admin write (a user added through its admin API)               ms
#
# each at QoS 0 and QoS 1. Every tern node has a data directory (a cluster node needs one; the
# clean sessions of the bench keep their messages in memory) and its cluster listener on
# 127.0.0.N. Every process listens on loopback only and is stopped by PID at the end. Raw output
# goes to bench/results/cluster-<time>/.
#
# Usage: bench/cluster.sh [--rounds N] [--count N]
set -euo pipefail

ROUNDS=1
COUNT=200000
while (($#)); do
	case $1 in
	--rounds) ROUNDS=${2:?}; shift 2 ;;
	--count) COUNT=${2:?}; shift 2 ;;
	-h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $COUNT =~ ^[1-9][0-9]*$ ]] || { echo "--rounds and --count take positive numbers" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-cluster.XXXXXX")
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
OUT="$ROOT/bench/results/cluster-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

raise_nofile
build_tern
if ! NATS=$(find_bin nats-server); then
	log "installing nats-server from Debian packages..."
	sudo=""
	[[ $(id -u) -ne 0 ]] && sudo="sudo"
	$sudo apt-get install -y nats-server >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y nats-server >/dev/null; } ||
		die "could not install nats-server"
	NATS=$(find_bin nats-server) || die "nats-server not found"
fi

# ---- tern ----
declare -A MQTT=() HTTPA=()

# start_node I [JOIN]: tern cluster node nI on 127.0.0.I, data in $WORK/nI.
start_node() {
	local i=$1 join=() port http cport
	port=$(free_port)
	http=$(free_port)
	cport=$(free_port)
	[[ -n ${2:-} ]] && join=(--join "$2")
	mkdir -p "$WORK/n$i"
	"$TERN" serve --node-id "n$i" --cluster-listen "127.0.0.$i:$cport" --mqtt "127.0.0.1:$port" \
		--http "127.0.0.1:$http" --unix "" --data-dir "$WORK/n$i" --log-level warn "${join[@]}" >>"$WORK/n$i.log" 2>&1 &
	BROKER_PID[n$i]=$!
	BROKER_PORT[n$i]=$port
	MQTT[n$i]=$port
	HTTPA[n$i]=127.0.0.1:$http
	CLUSTER[n$i]=127.0.0.$i:$cport
	# A joining node opens its MQTT listener once it has joined and caught up.
	for _ in $(seq 1 600); do
		port_open "$port" && return 0
		kill -0 "${BROKER_PID[n$i]}" 2>/dev/null || { cat "$WORK/n$i.log" >&2; die "n$i exited at start"; }
		sleep 0.1
	done
	die "n$i did not open its MQTT port within 60 s"
}
declare -A CLUSTER=()

start_single() {
	local port
	port=$(free_port)
	mkdir -p "$WORK/single"
	"$TERN" serve --mqtt "127.0.0.1:$port" --http "" --unix "" --data-dir "$WORK/single" --log-level warn >"$WORK/single.log" 2>&1 &
	BROKER_PID[single]=$!
	BROKER_PORT[single]=$port
	wait_port single "$port"
}

# ---- nats ----
start_nats_node() {
	local i=$1 routes=$2
	cat >"$WORK/nats$i.conf" <<-EOF
		server_name: nats$i
		listen: 127.0.0.1:${NPORT[c$i]}
		jetstream { store_dir: "$WORK/nats$i-js" }
		mqtt { listen: 127.0.0.1:${NPORT[m$i]} }
		cluster {
		  name: bench
		  listen: 127.0.0.1:${NPORT[r$i]}
		  routes: [$routes]
		}
	EOF
	"$NATS" -c "$WORK/nats$i.conf" >"$WORK/nats$i.log" 2>&1 &
	BROKER_PID[nats$i]=$!
}
declare -A NPORT=()

bench_run() { # NAME QOS PUBURL SUBURL
	local name=$1 q=$2 f="$OUT/$1-qos$2-r$3.json" n=$COUNT
	((q > 0)) && n=$((COUNT / 4))
	"$TERN" bench --url "mqtt://127.0.0.1:$4" --sub-url "mqtt://127.0.0.1:$5" -q "$q" -n "$n" --warmup 1000 -d 60s --json >"$f" 2>"$f.err" || true
	log "  $name QoS $q round $3: delivered $(jget "$f" delivered_msgs_per_s | cut -d. -f1) msg/s, lost $(jget "$f" lost)"
	jget "$f" delivered_msgs_per_s >>"$OUT/$name-qos$q.rates"
}

log "tern: single node and a 3-node cluster"
start_single
start_node 1
start_node 2 "${CLUSTER[n1]}"
start_node 3 "${CLUSTER[n1]}"

log "nats: 3 servers with routes, JetStream and MQTT"
for k in c r m; do for i in 1 2 3; do NPORT[$k$i]=$(free_port); done; done
for i in 1 2 3; do
	routes=""
	for j in 1 2 3; do ((j != i)) && routes+="nats-route://127.0.0.1:${NPORT[r$j]},"; done
	start_nats_node "$i" "${routes%,}"
done
for i in 1 2 3; do wait_port "nats$i" "${NPORT[m$i]}"; done
# JetStream needs its meta leader before the MQTT face takes sessions.
for _ in $(seq 1 300); do
	grep -q "JetStream cluster new metadata leader\|is the new metadata leader\|Self is new JetStream cluster metadata leader" "$WORK"/nats*.log && break
	sleep 0.1
done
sleep 2

for r in $(seq 1 "$ROUNDS"); do
	for q in 0 1; do
		bench_run single "$q" "$r" "${BROKER_PORT[single]}" "${BROKER_PORT[single]}"
		bench_run cross "$q" "$r" "${MQTT[n1]}" "${MQTT[n2]}"
		bench_run nats "$q" "$r" "${NPORT[m1]}" "${NPORT[m2]}"
	done
done

# ---- failover ----
leader() { curl -s "http://${HTTPA[n2]}/v1/cluster" | sed -n 's/.*"leader": *"\([^"]*\)".*/\1/p' | head -n1; }
L=$(leader)
[[ -n $L ]] || die "no leader before the kill"
survivor=n1
[[ $L == n1 ]] && survivor=n2
log "failover: kill -9 of the leader $L, admin writes on $survivor"
kill -KILL "${BROKER_PID[$L]}"
t0=$(date +%s%N)
for k in $(seq 1 600); do
	code=$(curl -s -o /dev/null -w '%{http_code}' -m 15 -X PUT -d '{"grants":["subscribe:x"]}' "http://${HTTPA[$survivor]}/v1/admin/users/failover-$k")
	[[ $code == 200 ]] && break
done
t1=$(date +%s%N)
FAILOVER_MS=$(((t1 - t0) / 1000000))
log "  first acknowledged admin write ${FAILOVER_MS} ms after the kill"
wait "${BROKER_PID[$L]}" 2>/dev/null || true
unset "BROKER_PID[$L]"

med() { median <"$OUT/$1-qos$2.rates"; }
{
	echo "bench/cluster.sh  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cores  rounds $ROUNDS  QoS 0: $COUNT msgs, QoS 1: $((COUNT / 4)) msgs"
	echo "tern $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $("$NATS" --version 2>&1 | head -n1)"
	printf '%-8s %14s %14s %14s %12s %12s\n' QoS "tern single" "tern cross" "nats cross" "cross/single" "tern/nats"
	for q in 0 1; do
		s=$(med single $q) c=$(med cross $q) n=$(med nats $q)
		printf '%-8s %14.0f %14.0f %14.0f %12.2f %12.2f\n' "$q" "$s" "$c" "$n" \
			"$(awk -v a="$c" -v b="$s" 'BEGIN{print (b>0)?a/b:0}')" "$(awk -v a="$c" -v b="$n" 'BEGIN{print (b>0)?a/b:0}')"
	done
	echo "failover: kill -9 of the leader -> first acknowledged admin write on a survivor: ${FAILOVER_MS} ms"
} | tee "$OUT/table.txt"

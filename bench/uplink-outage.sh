#!/usr/bin/env bash
# bench/uplink-outage.sh: store and forward across an outage and a crash, tern's uplink and a
# Mosquitto bridge side by side, in one run on this machine.
#
# A site router and a designated router (DR) on 127.0.0.1; the site's link to the DR goes through
# a TCP proxy (bench/uplinkload). QoS 1 publishers at the site publish numbered messages at RATE
# messages per second in all for DURATION; a persistent QoS 1 subscriber at the DR counts what
# arrives. The link is down from CUT to RESTORE, and the site router is killed with SIGKILL at
# KILL and started again (its link still down). Printed for each: acknowledged, delivered, lost
# (acknowledged and never delivered: must be 0), duplicates, out of order per publisher, and the
# backlog's drain rate against the rate it built up (goal: at least 10 times).
#
#   tern       a site with one [[route.uplink]] (mqtts, client certificate) to a tern DR, both
#              with data directories and store.sync = "always"
#   mosquitto  Debian's mosquitto as the site with a bridge (cleansession false, topic
#              bldg1/# out 1, persistence true, max_queued_messages 100000, restart_timeout 1)
#              to a mosquitto DR (persistence true), plain TCP
#
# Usage: bench/uplink-outage.sh [--quick] [--rate N] [--only tern|mosquitto] [--inflight N]
#   --quick     a tenth of the times (12 s, cut at 2 s, killed at 5 s, restored at 8 s): a dry run
#   --inflight  tern's [[route.uplink]] inflight (default 256, its default)
# Results go to bench/results/uplink-<time>/.
set -euo pipefail

RATE=1000
SCALE=1
ONLY=""
INFLIGHT=256
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	--quick) SCALE=10; shift ;;
	--rate) RATE=${2:?}; shift 2 ;;
	--only) ONLY=${2:?}; shift 2 ;;
	--inflight) INFLIGHT=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
DURATION=$((120000 / SCALE))ms CUT=$((20000 / SCALE))ms RESTORE=$((80000 / SCALE))ms KILL=$((50000 / SCALE))ms
SETTLE=$((60000 / SCALE))ms

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-uplink.XXXXXX")
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

build_tern
(cd "$ROOT" && go build -o "$WORK/uplinkload" ./bench/uplinkload) || die "go build bench/uplinkload failed"
OUT="$ROOT/bench/results/uplink-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
log "work in $WORK ($(work_fs)); results in $OUT"

# load NAME SITE_CMD SITE_PORT DR_PORT UPSTREAM_PORT PROXY_PORT: one run of the scenario.
load() {
	"$WORK/uplinkload" -name "$1" -site-cmd "$2" -site-mqtt "127.0.0.1:$3" -dr-mqtt "127.0.0.1:$4" \
		-upstream "127.0.0.1:$5" -proxy-listen "127.0.0.1:$6" -rate "$RATE" \
		-duration "$DURATION" -cut-at "$CUT" -restore-at "$RESTORE" -kill-at "$KILL" -settle "$SETTLE" \
		>"$OUT/$1.json" 2>"$OUT/$1.log" || { tail -n 30 "$OUT/$1.log" >&2; die "the $1 run failed"; }
	cat "$OUT/$1.json" >&2
}

run_tern() {
	local certs="$WORK/certs" dr_port route site_port proxy
	"$TERN" cert ca --dir "$certs" >/dev/null
	"$TERN" cert issue dr --server --host 127.0.0.1 --dir "$certs" >/dev/null
	"$TERN" cert issue site-a --dir "$certs" >/dev/null
	dr_port=$(free_port) route=$(free_port) site_port=$(free_port) proxy=$(free_port)
	mkdir -p "$WORK/dr-data" "$WORK/site-data"
	cat >"$WORK/dr.toml" <<-EOF
		[tls]
		cert_file = "$certs/dr.crt"
		key_file = "$certs/dr.key"
		client_ca_file = "$certs/ca.crt"
		[route]
		id = "dr"
		listen = "127.0.0.1:$route"
		designated = ["bldg1"]
	EOF
	cat >"$WORK/site.toml" <<-EOF
		[route]
		id = "site-a"
		[[route.uplink]]
		name = "dr"
		url = "mqtts://127.0.0.1:$proxy"
		namespaces = ["bldg1"]
		cert_file = "$certs/site-a.crt"
		key_file = "$certs/site-a.key"
		ca_file = "$certs/ca.crt"
		keep_alive = "5s"
		reconnect_max = "1s"
		inflight = $INFLIGHT
	EOF
	"$TERN" serve --config "$WORK/dr.toml" --mqtt "127.0.0.1:$dr_port" --http "" --unix "" \
		--data-dir "$WORK/dr-data" --sync always --log-level warn >"$WORK/tern_dr.log" 2>&1 &
	BROKER_PID[tern_dr]=$!
	wait_port tern_dr "$dr_port"
	log "tern: DR on $dr_port (sites on $route), site on $site_port, proxy on $proxy"
	load tern "$TERN serve --config $WORK/site.toml --mqtt 127.0.0.1:$site_port --http '' --unix '' --data-dir $WORK/site-data --sync always --log-level warn" \
		"$site_port" "$dr_port" "$route" "$proxy"
	cp "$WORK/tern_dr.log" "$OUT/tern-dr.log"
	stop_broker tern_dr
}

run_mosquitto() {
	local dr_port site_port proxy
	MOSQUITTO=$(find_bin mosquitto) || die "mosquitto not found (apt-get install -y mosquitto)"
	dr_port=$(free_port) site_port=$(free_port) proxy=$(free_port)
	mkdir -p "$WORK/mdr-data" "$WORK/msite-data"
	cat >"$WORK/mosquitto_dr.conf" <<-EOF
		listener $dr_port 127.0.0.1
		allow_anonymous true
		persistence true
		persistence_location $WORK/mdr-data/
		max_queued_messages 200000
		log_dest stderr
		log_type error
		log_type warning
	EOF
	cat >"$WORK/mosquitto_site.conf" <<-EOF
		listener $site_port 127.0.0.1
		allow_anonymous true
		persistence true
		persistence_location $WORK/msite-data/
		max_queued_messages 100000
		log_dest stderr
		log_type error
		log_type warning
		connection dr
		address 127.0.0.1:$proxy
		topic bldg1/# out 1
		cleansession false
		restart_timeout 1
		keepalive_interval 5
	EOF
	"$MOSQUITTO" -c "$WORK/mosquitto_dr.conf" >"$WORK/mosquitto_dr.log" 2>&1 &
	BROKER_PID[mosquitto_dr]=$!
	wait_port mosquitto_dr "$dr_port"
	log "mosquitto $("$MOSQUITTO" -h 2>/dev/null | sed -n 's/^mosquitto version \(.*\)/\1/p' | head -n1): DR on $dr_port, site on $site_port, proxy on $proxy"
	load mosquitto "$MOSQUITTO -c $WORK/mosquitto_site.conf" "$site_port" "$dr_port" "$dr_port" "$proxy"
	stop_broker mosquitto_dr
}

[[ -z $ONLY || $ONLY == tern ]] && run_tern
[[ -z $ONLY || $ONLY == mosquitto ]] && run_mosquitto

# The table: one column per run.
row() {
	local label=$1 key=$2 name
	printf '%-34s' "$label"
	for name in tern mosquitto; do
		[[ -f $OUT/$name.json ]] && printf '%14s' "$(jget "$OUT/$name.json" "$key" | awk '{ if ($1 == int($1)) print $1; else printf "%.1f\n", $1 }')"
	done
	printf '\n'
}
{
	printf 'uplink outage: %s msg/s QoS 1 for %s, link down %s..%s, site killed -9 at %s\n\n' "$RATE" "$DURATION" "$CUT" "$RESTORE" "$KILL"
	printf '%-34s' ""
	for name in tern mosquitto; do [[ -f $OUT/$name.json ]] && printf '%14s' "$name"; done
	printf '\n'
	row "acknowledged" acknowledged
	row "delivered" delivered
	row "lost (must be 0)" lost
	row "duplicates" duplicates
	row "out of order (per publisher)" out_of_order
	row "arrived, never acknowledged" arrived_unacknowledged
	row "backlog built up (msg/s)" backlog_build_rate
	row "link back after restore (s)" relink_seconds
	row "backlog drained (msg/s)" drain_rate
	row "drain / build-up" drain_ratio
} | tee "$OUT/summary.txt"

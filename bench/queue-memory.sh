#!/usr/bin/env bash
# bench/queue-memory.sh: tern's memory with a large backlog queued for one offline persistent
# session. Target: less than 100 MB over idle with 1,000,000 messages queued.
#
# Against a tern on 127.0.0.1 with a data directory in $WORK and its HTTP listener (for stats):
#   1. a persistent subscriber subscribes at QoS Q to queue/# and disconnects
#      (`tern bench --phase subscribe`); then the idle RSS is read (VmRSS of the process);
#   2. P publishers publish N 128-byte messages at QoS Q with no subscriber online
#      (`tern bench -s 0`): the fill rate is their (acknowledged, at QoS 1) publish rate;
#   3. once `tern stats` (GET /v1/stats) reports all of them queued, the RSS and the store's
#      disk bytes are read;
#   4. the subscriber comes back and drains its queue (`tern bench --phase drain`), counting
#      every message: the drain rate runs from its connect to the last delivery.
# Every step is bounded in time (--timeout each). Results go to bench/results/queue-<time>/.
#
# The session queue limits are raised to fit N (tern's default is 10,000 messages or 64 MiB).
# The default --sync here is interval (fsync every 100 ms), for filling speed: a crash of the
# process loses nothing, a power cut the last 100 ms; --sync always fsyncs before every
# acknowledgement. At QoS 0 tern queues for offline persistent sessions too (its default).
#
# Usage: bench/queue-memory.sh [--messages N] [--publishers P] [--qos 0|1]
#                              [--sync interval|always] [--timeout SECONDS] [--tern-memory]
#   --tern-memory  run tern without a data directory: a dry run of the script when the durable
#                  store is not available (the queue is then in memory: not the figure sought)
set -euo pipefail

N=1000000
P=4
QOS=1
SYNC=interval
TIMEOUT=600
MEMORY=0
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	--messages) N=${2:?}; shift 2 ;;
	--publishers) P=${2:?}; shift 2 ;;
	--qos) QOS=${2:?}; shift 2 ;;
	--sync) SYNC=${2:?}; shift 2 ;;
	--timeout) TIMEOUT=${2:?}; shift 2 ;;
	--tern-memory) MEMORY=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $N =~ ^[1-9][0-9]*$ && $P =~ ^[1-9][0-9]*$ && $TIMEOUT =~ ^[1-9][0-9]*$ ]] ||
	{ echo "--messages, --publishers and --timeout must be positive numbers" >&2; exit 2; }
[[ $QOS == 0 || $QOS == 1 ]] || { echo "--qos must be 0 or 1" >&2; exit 2; }
[[ $SYNC == interval || $SYNC == always ]] || { echo "--sync must be interval or always" >&2; exit 2; }
((N % P == 0)) || { echo "--messages must be a multiple of --publishers" >&2; exit 2; }
PER=$((N / P))

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-queue.XXXXXX")
export TERN_SYNC=$SYNC TERN_MEMORY=$MEMORY DURABLE_MAX_QUEUED=$((N + N / 10 + 1000))
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

raise_nofile
build_tern
OUT="$ROOT/bench/results/queue-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"

start_tern_durable --http
PID=${BROKER_PID[tern_durable]}
URL="mqtt://127.0.0.1:${BROKER_PORT[tern_durable]}"
STATS="http://${BROKER_HTTP[tern_durable]}"
RUN=$(printf '%08x' $(((RANDOM << 15 | RANDOM) + 1)))
TOPIC=queue
log "tern_durable on $URL (pid $PID), stats at $STATS; $(tern_durable_desc); run $RUN"

# stats NAME: save GET /v1/stats as $OUT/stats-NAME.json (and print its path).
stats() {
	timeout 20 "$TERN" stats --server "$STATS" --sessions 3 --json >"$OUT/stats-$1.json"
	echo "$OUT/stats-$1.json"
}
alive() { kill -0 "$PID" 2>/dev/null || { tail -n 20 "$WORK/tern_durable.log" >&2; die "tern died"; }; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }

# 1. The offline persistent session, and the idle figure.
timeout 60 "$TERN" bench --url "$URL" --phase subscribe --run-id "$RUN" -q "$QOS" -s 1 --topic "$TOPIC" >&2 ||
	die "the persistent subscriber could not subscribe"
sleep 2
alive
IDLE=$(rss_kib "$PID")
IDLE_DISK=$(jget "$(stats idle)" disk_bytes)
log "idle: RSS $(mb "$IDLE") MB, store $IDLE_DISK bytes"

# 2. Fill its queue with nobody online.
log "publishing $N messages of 128 B at QoS $QOS ($P publishers x $PER), no subscriber online..."
FILL_START=$(date +%s.%N)
timeout $((TIMEOUT + 30)) "$TERN" bench --url "$URL" --run-id "$RUN" -q "$QOS" -s 0 -p "$P" -n "$PER" \
	-d "${TIMEOUT}s" --topic "$TOPIC" --json >"$OUT/fill.json" 2>"$OUT/fill.err" ||
	die "filling failed: $(tail -n1 "$OUT/fill.err")"
alive
SENT=$(jget "$OUT/fill.json" sent)
FILL_RATE=$(jget "$OUT/fill.json" publish_msgs_per_s)
log "fill: sent $SENT at $(printf '%.0f' "$FILL_RATE") msg/s, acked $(jget "$OUT/fill.json" acked)"

# 3. Wait (bounded) until the broker reports every message queued.
QUEUED=0
deadline=$((SECONDS + TIMEOUT))
while ((SECONDS < deadline)); do
	alive
	QUEUED=$(jget "$(stats full)" queued)
	((QUEUED >= SENT)) && break
	sleep 0.5
done
QUEUED_AFTER=$(awk -v a="$(date +%s.%N)" -v b="$FILL_START" 'BEGIN { printf "%.1f", a - b }')
((QUEUED >= SENT)) || log "warning: only $QUEUED of $SENT queued after ${TIMEOUT}s"
sleep 2 # let the broker settle
alive
FULL=$(rss_kib "$PID")
DISK=$(jget "$(stats full)" disk_bytes)
DU=0
((MEMORY)) || DU=$(du -sb "$WORK/tern-data" | cut -f1)
log "queued $QUEUED (${QUEUED_AFTER}s after the fill began): RSS $(mb "$FULL") MB, store $DISK bytes (du $DU)"

# 4. The subscriber comes back and drains its queue.
log "draining..."
timeout $((TIMEOUT + 30)) "$TERN" bench --url "$URL" --phase drain --run-id "$RUN" -q "$QOS" -s 1 -p "$P" -n "$PER" \
	-d "${TIMEOUT}s" --drain 10s --topic "$TOPIC" --json >"$OUT/drain.json" 2>"$OUT/drain.err" ||
	die "draining failed: $(tail -n1 "$OUT/drain.err")"
alive
AFTER=$(rss_kib "$PID")
LEFT=$(jget "$(stats drained)" queued)
cp "$WORK/tern_durable.log" "$OUT/tern.log"

FILL_DESC="$(printf '%.0f' "$FILL_RATE") msg/s acknowledged publishes"
((QOS)) || FILL_DESC="$(printf '%.0f' "$FILL_RATE") msg/s written by the publishers (QoS 0: no acknowledgement)"
FILL_DESC+="; all queued ${QUEUED_AFTER} s after the start ($(awk -v n="$QUEUED" -v t="$QUEUED_AFTER" 'BEGIN { printf "%.0f", n / t }') msg/s)"
DIFF=$((FULL - IDLE))
VERDICT=$(awk -v d="$(mb "$DIFF")" 'BEGIN { print (d < 100) ? "yes" : "NO" }')
{
	echo "queue memory: $N messages of 128 B at QoS $QOS ($P publishers) for one offline persistent session"
	echo "tern: $(tern_durable_desc); $(queue_limit_desc); store on $(work_fs)"
	((MEMORY)) && echo "DRY RUN: no data directory, the queue is held in memory"
	printf '%-30s %s\n' "idle RSS" "$(mb "$IDLE") MB"
	printf '%-30s %s\n' "RSS with $QUEUED queued" "$(mb "$FULL") MB"
	printf '%-30s %s\n' "over idle" "$(mb "$DIFF") MB (target < 100 MB: $VERDICT)"
	printf '%-30s %s\n' "store on disk" "$(awk -v b="$DISK" 'BEGIN { printf "%.1f MB", b / 1e6 }') (stats disk_bytes; idle $IDLE_DISK bytes; du $DU bytes)"
	printf '%-30s %s\n' "fill" "$FILL_DESC"
	printf '%-30s %s\n' "drain" "$(printf '%.0f' "$(jget "$OUT/drain.json" delivered_msgs_per_s)") msg/s; delivered $(jget "$OUT/drain.json" delivered) of $(jget "$OUT/drain.json" expected), lost $(jget "$OUT/drain.json" lost), duplicates $(jget "$OUT/drain.json" duplicates)"
	printf '%-30s %s\n' "after the drain" "RSS $(mb "$AFTER") MB, $LEFT queued"
} | tee "$OUT/table.txt"
echo "results: $OUT"

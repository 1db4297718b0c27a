# shellcheck shell=bash
# Shared by bench/compare.sh, bench/idle-memory.sh and bench/queue-memory.sh: build tern, install
# and start the peer brokers on 127.0.0.1, wait for them, stop them by PID, find natscli. Source
# it; it expects $WORK (a temp directory) and $ROOT (the repository) to be set.
#
# Brokers, by the name start_broker takes:
#   tern               memory only (--data-dir "")
#   tern_durable       a data directory in $WORK, --sync $TERN_SYNC (default always); with
#                      TERN_MEMORY=1 memory only instead (a dry run without the durable store)
#   mosquitto          persistence false
#   mosquitto_durable  persistence true in $WORK, default autosave (no fsync per message)
# DURABLE_MAX_QUEUED, when set, is the per-session queue limit (messages) of the two durable
# ones, in place of their defaults (tern 10,000 messages or 64 MiB, Mosquitto 1,000 messages).
#   nats               nats-server with JetStream (file store in $WORK) and its MQTT port; the
#                      NATS client port is in NATS_CLIENT_PORT
#   tern_tls, mosquitto_tls, nats_tls
#                      tern, mosquitto and nats as above with only MQTT over TLS, a `tern cert`
#                      server certificate for 127.0.0.1 ($WORK/tls/ca.crt is what clients trust)
#   tern_ws, mosquitto_ws
#                      MQTT over WebSocket only (ws://127.0.0.1:PORT/mqtt): tern's HTTP listener,
#                      Mosquitto's websockets listener (libwebsockets)

# Brokers started by start_* are recorded here and stopped by stop_all (trap it on EXIT).
declare -A BROKER_PID=()
declare -A BROKER_PORT=()
# BROKER_HTTP holds the HTTP listener of a tern started with one (tern stats --server).
declare -A BROKER_HTTP=()
NATS_CLIENT_PORT=""
TERN_SYNC=${TERN_SYNC:-always}
TERN_MEMORY=${TERN_MEMORY:-0}
# BENCH_TERN_ARGS: more arguments for the memory-only tern (word-split; a TLS listener, say).
BENCH_TERN_ARGS=${BENCH_TERN_ARGS:-}
DURABLE_MAX_QUEUED=${DURABLE_MAX_QUEUED:-}
NATSCLI_VERSION=${NATSCLI_VERSION:-v0.4.0}

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

raise_nofile() {
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	log "open files limit: $(ulimit -n)"
}

# build_tern: build this tree's tern into $WORK; it is the load tool (`tern bench`) and, unless
# BENCH_TERN_BIN names another tern binary (an earlier build, to compare before and after with
# the same load tool), the broker under test too (TERN_SERVER).
build_tern() {
	log "building tern..."
	(cd "$ROOT" && go build -o "$WORK/tern" ./cmd/tern) || die "go build failed"
	TERN="$WORK/tern"
	TERN_SERVER=${BENCH_TERN_BIN:-$TERN}
	[[ -x $TERN_SERVER ]] || die "BENCH_TERN_BIN=$TERN_SERVER is not an executable"
	[[ $TERN_SERVER != "$TERN" ]] && log "broker under test: $TERN_SERVER (load tool: this tree's tern)"
	return 0
}

# find_bin NAME: the binary's path, looking in /usr/sbin too (not on every PATH).
find_bin() {
	command -v "$1" 2>/dev/null && return 0
	for d in /usr/sbin /usr/local/sbin /sbin; do
		[[ -x "$d/$1" ]] && { echo "$d/$1"; return 0; }
	done
	return 1
}

# ensure_peers: install mosquitto and nats-server from Debian only when a binary is missing.
ensure_peers() {
	local missing=()
	find_bin mosquitto >/dev/null || missing+=(mosquitto)
	find_bin nats-server >/dev/null || missing+=(nats-server)
	if ((${#missing[@]})); then
		log "installing ${missing[*]} from Debian packages..."
		local sudo=""
		[[ $(id -u) -ne 0 ]] && sudo="sudo"
		$sudo apt-get update && $sudo apt-get install -y mosquitto nats-server || die "could not install ${missing[*]}"
	fi
	MOSQUITTO=$(find_bin mosquitto) || die "mosquitto not found"
	NATS=$(find_bin nats-server) || die "nats-server not found"
}

# port_open PORT: true when something accepts connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port on 127.0.0.1 nobody listens on, below the kernel's ephemeral range: a port in
# that range may be the local end of a load tool's connection, and binding it then fails.
free_port() {
	local p low=32768
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	((low > 21000)) || low=32768
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % (low - 20000)))
		if ! port_open "$p"; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_port NAME PORT: wait (at most 20 s) until the broker accepts; fail if it died.
wait_port() {
	local name=$1 port=$2 pid=${BROKER_PID[$1]}
	for _ in $(seq 1 200); do
		port_open "$port" && return 0
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2 || true; die "$name exited at start"; }
		sleep 0.1
	done
	die "$name did not open port $port within 20 s"
}

# start_tern: tern memory-only (the default data directory would make it durable).
start_tern() {
	local port
	port=$(free_port)
	"$TERN_SERVER" serve --mqtt "127.0.0.1:$port" --http "" --unix "" --data-dir "" --log-level warn $BENCH_TERN_ARGS >"$WORK/tern.log" 2>&1 &
	BROKER_PID[tern]=$!
	BROKER_PORT[tern]=$port
	wait_port tern "$port"
}

# start_tern_tls: tern memory-only with only an MQTT-over-TLS listener, its server certificate
# from `tern cert` in $WORK/tls (ca.crt there is what clients verify against).
start_tern_tls() {
	local port certs="$WORK/tls"
	if [[ ! -f $certs/server.crt ]]; then
		"$TERN" cert ca --dir "$certs" >/dev/null
		"$TERN" cert issue server --server --host 127.0.0.1 --dir "$certs" >/dev/null
	fi
	port=$(free_port)
	"$TERN_SERVER" serve --mqtt "" --mqtt-tls "127.0.0.1:$port" --tls-cert "$certs/server.crt" \
		--tls-key "$certs/server.key" --http "" --unix "" --data-dir "" --log-level warn $BENCH_TERN_ARGS \
		>"$WORK/tern_tls.log" 2>&1 &
	BROKER_PID[tern_tls]=$!
	BROKER_PORT[tern_tls]=$port
	wait_port tern_tls "$port"
}

# start_tern_ws: tern memory-only with only its HTTP listener, whose /mqtt is MQTT over WebSocket.
start_tern_ws() {
	local port
	port=$(free_port)
	"$TERN_SERVER" serve --mqtt "" --http "127.0.0.1:$port" --unix "" --data-dir "" --log-level warn $BENCH_TERN_ARGS \
		>"$WORK/tern_ws.log" 2>&1 &
	BROKER_PID[tern_ws]=$!
	BROKER_PORT[tern_ws]=$port
	wait_port tern_ws "$port"
}

# start_mosquitto_ws: Mosquitto (persistence false) with only a websockets listener.
start_mosquitto_ws() {
	start_mosquitto_one mosquitto_ws "protocol websockets"
}

# start_mosquitto_one NAME LINES: Mosquitto (persistence false, anonymous) with one listener on
# 127.0.0.1 and LINES (newline-separated options for it, may be empty) in its configuration. It
# runs as the user running the script ("user"): started as root it would switch to the mosquitto
# user, who cannot read files in $WORK.
start_mosquitto_one() {
	local name=$1 lines=$2 port conf="$WORK/$1.conf"
	port=$(free_port)
	{
		echo "listener $port 127.0.0.1"
		[[ -n $lines ]] && printf '%s\n' "$lines"
		cat <<-EOF
			user $(id -un)
			allow_anonymous true
			persistence false
			log_dest stderr
			log_type error
			log_type warning
		EOF
	} >"$conf"
	"$MOSQUITTO" -c "$conf" >"$WORK/$name.log" 2>&1 &
	BROKER_PID[$name]=$!
	BROKER_PORT[$name]=$port
	wait_port "$name" "$port"
}

# ensure_tls_certs: a CA and a server certificate for 127.0.0.1 from `tern cert` in $WORK/tls
# (ca.crt, server.crt, server.key), made once per run; every TLS broker below uses them.
ensure_tls_certs() {
	local certs="$WORK/tls"
	[[ -f $certs/server.crt ]] && return 0
	"$TERN" cert ca --dir "$certs" >/dev/null
	"$TERN" cert issue server --server --host 127.0.0.1 --dir "$certs" >/dev/null
}

# start_mosquitto_tls: Mosquitto (persistence false) with only an MQTT-over-TLS listener, the
# certificate of ensure_tls_certs. OpenSSL's defaults stay: TLS 1.3 session tickets on. It runs
# as the user running the script ("user"): started as root it would switch to the mosquitto user,
# who cannot read the key in $WORK.
start_mosquitto_tls() {
	local certs="$WORK/tls"
	ensure_tls_certs
	start_mosquitto_one mosquitto_tls "certfile $certs/server.crt
keyfile $certs/server.key"
}

# start_nats_tls: nats-server as start_nats (JetStream, for persistent MQTT sessions) with its
# MQTT port over TLS only, the certificate of ensure_tls_certs.
start_nats_tls() {
	local port client conf="$WORK/nats_tls.conf" certs="$WORK/tls"
	ensure_tls_certs
	port=$(free_port)
	client=$(free_port)
	mkdir -p "$WORK/nats_tls-js"
	cat >"$conf" <<-EOF
		server_name: tern_bench_tls
		listen: 127.0.0.1:$client
		jetstream {
		  store_dir: "$WORK/nats_tls-js"
		}
		mqtt {
		  listen: 127.0.0.1:$port
		  tls {
		    cert_file: "$certs/server.crt"
		    key_file: "$certs/server.key"
		  }
		}
	EOF
	"$NATS" -c "$conf" >"$WORK/nats_tls.log" 2>&1 &
	BROKER_PID[nats_tls]=$!
	BROKER_PORT[nats_tls]=$port
	NATS_CLIENT_PORT=$client
	wait_port nats_tls "$port"
	wait_port nats_tls "$client"
}

# start_tern_durable [--http] [SERVE ARGS...]: a second tern, "tern_durable", with its durable
# store in $WORK/tern-data (kept across restarts within the run) and --sync $TERN_SYNC; --http
# also opens its HTTP listener (BROKER_HTTP[tern_durable], for tern stats). TERN_MEMORY=1 runs it
# memory-only instead.
start_tern_durable() {
	local port http=() data="$WORK/tern-data"
	port=$(free_port)
	if [[ ${1:-} == --http ]]; then
		shift
		BROKER_HTTP[tern_durable]=127.0.0.1:$(free_port)
		http=(--http "${BROKER_HTTP[tern_durable]}")
	else
		http=(--http "")
	fi
	((TERN_MEMORY)) && data=""
	[[ -n $data ]] && mkdir -p "$data"
	: >"$WORK/tern_durable.toml"
	if [[ -n $DURABLE_MAX_QUEUED ]]; then
		printf '[session]\nmax_queued_messages = %d\nmax_queued_bytes = %d\n' \
			"$DURABLE_MAX_QUEUED" "$((DURABLE_MAX_QUEUED * 1024))" >"$WORK/tern_durable.toml"
	fi
	"$TERN_SERVER" serve --config "$WORK/tern_durable.toml" --mqtt "127.0.0.1:$port" "${http[@]}" --unix "" \
		--data-dir "$data" --sync "$TERN_SYNC" --log-level warn "$@" >>"$WORK/tern_durable.log" 2>&1 &
	BROKER_PID[tern_durable]=$!
	BROKER_PORT[tern_durable]=$port
	wait_port tern_durable "$port"
}

# tern_durable_desc: one line saying how tern_durable stores messages.
tern_durable_desc() {
	if ((TERN_MEMORY)); then
		echo "MEMORY ONLY (--data-dir \"\": a dry run, nothing is durable)"
	else
		echo "data dir in \$WORK, --sync $TERN_SYNC$([[ $TERN_SYNC == always ]] && echo ' (fsync before each acknowledgement, shared by concurrent publishers)')"
	fi
}

# work_fs: the filesystem type under $WORK, where the durable stores live (fsync means little on
# tmpfs: say so).
work_fs() {
	local t
	t=$(df -PT "$WORK" 2>/dev/null | awk 'NR == 2 { print $2 }')
	case $t in
	tmpfs | ramfs) echo "$t (in memory: fsync costs nothing here, durable figures are optimistic)" ;;
	*) echo "${t:-unknown}" ;;
	esac
}

# queue_limit_desc: one line saying which queue limits the durable brokers have.
queue_limit_desc() {
	if [[ -n $DURABLE_MAX_QUEUED ]]; then
		echo "session queue limit $DURABLE_MAX_QUEUED messages (tern also $((DURABLE_MAX_QUEUED * 1024)) bytes)"
	else
		echo "default session queue limits (tern 10,000 messages or 64 MiB, drop oldest; Mosquitto 1,000 messages)"
	fi
}

# start_mosquitto [NAME [PERSIST]]: Mosquitto as NAME (default mosquitto); PERSIST=1 turns on
# persistence to $WORK/NAME-data/ with the default autosave_interval (1800 s): its in-memory
# state is written at autosave and at exit, never fsynced per message; and DURABLE_MAX_QUEUED.
start_mosquitto() {
	local name=${1:-mosquitto} persist=${2:-0} port conf
	conf="$WORK/$name.conf"
	port=$(free_port)
	# max_queued_messages and max_inflight_messages stay at their defaults.
	cat >"$conf" <<-EOF
		listener $port 127.0.0.1
		allow_anonymous true
		log_dest stderr
		log_type error
		log_type warning
	EOF
	if ((persist)); then
		mkdir -p "$WORK/$name-data"
		printf 'persistence true\npersistence_location %s/\n' "$WORK/$name-data" >>"$conf"
		[[ -n $DURABLE_MAX_QUEUED ]] && echo "max_queued_messages $DURABLE_MAX_QUEUED" >>"$conf"
	else
		echo "persistence false" >>"$conf"
	fi
	"$MOSQUITTO" -c "$conf" >"$WORK/$name.log" 2>&1 &
	BROKER_PID[$name]=$!
	BROKER_PORT[$name]=$port
	wait_port "$name" "$port"
}

start_nats() {
	local port client conf="$WORK/nats.conf"
	port=$(free_port)
	client=$(free_port)
	mkdir -p "$WORK/nats-js"
	cat >"$conf" <<-EOF
		server_name: tern_bench
		listen: 127.0.0.1:$client
		jetstream {
		  store_dir: "$WORK/nats-js"
		}
		mqtt {
		  listen: 127.0.0.1:$port
		}
	EOF
	"$NATS" -c "$conf" >"$WORK/nats.log" 2>&1 &
	BROKER_PID[nats]=$!
	BROKER_PORT[nats]=$port
	NATS_CLIENT_PORT=$client
	wait_port nats "$port"
	wait_port nats "$client"
}

# start_broker NAME [ARGS...]: start a broker by name (ARGS go to start_tern_durable).
start_broker() {
	case $1 in
	tern) start_tern ;;
	tern_tls) start_tern_tls ;;
	tern_durable) start_tern_durable "${@:2}" ;;
	mosquitto) start_mosquitto ;;
	mosquitto_durable) start_mosquitto mosquitto_durable 1 ;;
	nats) start_nats ;;
	mosquitto_tls) start_mosquitto_tls ;;
	nats_tls) start_nats_tls ;;
	tern_ws) start_tern_ws ;;
	mosquitto_ws) start_mosquitto_ws ;;
	*) die "unknown broker $1" ;;
	esac
}

# stop_broker NAME: TERM by PID, KILL after 5 s.
stop_broker() {
	local pid=${BROKER_PID[$1]:-}
	[[ -z $pid ]] && return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	unset "BROKER_PID[$1]"
}

stop_all() {
	local b
	for b in "${!BROKER_PID[@]}"; do
		stop_broker "$b"
	done
}

# rss_kib PID: the process's resident set size in KiB, from /proc/PID/status.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# cpu_ms PID: the CPU time the process has used (user and system) in milliseconds, from
# /proc/PID/stat (fields 14 and 15, in clock ticks; the command name may hold spaces, so the
# fields are counted after its closing parenthesis).
cpu_ms() {
	local hz
	hz=$(getconf CLK_TCK)
	sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{ printf "%d", ($12 + $13) * 1000 / hz }'
}

# jget FILE KEY: a number from `tern bench --json` output (keys are unique in it).
jget() { sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -n1; }

# median: the median of the numbers on stdin ("NA" when there are none).
median() {
	sort -g | awk '{v[NR]=$1} END {
		if (NR == 0) { print "NA"; exit }
		if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}

# ratio A B: A/B with two decimals, or "-".
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

# natscli_ok BIN: true when BIN is a natscli whose `nats bench` has the JetStream subcommands
# (`nats bench js pub async SUBJECT`, natscli 0.2 and later; older ones spelled it
# `nats bench SUBJECT --js --pub N`, which js_pub_rate does not speak).
natscli_ok() { "$1" bench js pub async --help >/dev/null 2>&1; }

# ensure_natscli: set NATSCLI to a usable natscli, looking in PATH, /work/tools/bin,
# $HOME/go/bin and the cache below; else build natscli $NATSCLI_VERSION into
# ${XDG_CACHE_HOME:-$HOME/.cache}/tern-bench/bin (outside the repository: never commit it) with
# go install, or, if the module proxy refuses that (go install looks up the module's version
# list), from the module downloaded with go mod download. NATSCLI stays empty, with a message,
# when all of that fails: callers skip JetStream then.
ensure_natscli() {
	NATSCLI=""
	local c dir cache="${XDG_CACHE_HOME:-$HOME/.cache}/tern-bench"
	for c in "$(command -v nats 2>/dev/null || true)" /work/tools/bin/nats "$HOME/go/bin/nats" "$cache/bin/nats"; do
		if [[ -n $c && -x $c ]] && natscli_ok "$c"; then
			NATSCLI=$c
			return 0
		fi
	done
	mkdir -p "$cache/bin" || { log "natscli: cannot create $cache; skipping JetStream"; return 0; }
	log "natscli not found: building github.com/nats-io/natscli/nats@$NATSCLI_VERSION into $cache/bin (log: $cache/build.log)..."
	if ! (cd "$cache" && GOBIN="$cache/bin" GOFLAGS=-buildvcs=false timeout 1200 \
		go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION") >"$cache/build.log" 2>&1; then
		log "natscli: go install failed ($(grep -m1 -i 'error\|forbidden\|go: ' "$cache/build.log" || tail -n1 "$cache/build.log")); building from the downloaded module..."
		dir=$(cd "$cache" && GOFLAGS='' go mod download -json "github.com/nats-io/natscli@$NATSCLI_VERSION" 2>>"$cache/build.log" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || dir=""
		if [[ -z $dir ]] || ! (cd "$dir" && GOFLAGS=-buildvcs=false timeout 1200 go build -o "$cache/bin/nats" ./nats) >>"$cache/build.log" 2>&1; then
			log "natscli: could not build it (see $cache/build.log): skipping JetStream"
			return 0
		fi
	fi
	if natscli_ok "$cache/bin/nats"; then
		NATSCLI=$cache/bin/nats
	else
		log "natscli: $cache/bin/nats has no 'nats bench js pub async': skipping JetStream"
	fi
}

# js_pub_rate NAME CLIENTS MSGS OUT: `nats bench` JetStream asynchronous publish of MSGS messages
# in all (split between CLIENTS connections) of 128 bytes to a file-storage stream bench_NAME
# (created, or purged, first) on the nats-server at NATS_CLIENT_PORT; the output goes to OUT and
# the aggregate rate in msgs/sec to stdout. Bounded by timeout; fails if there is no rate.
js_pub_rate() {
	local name=$1 clients=$2 msgs=$3 out=$4 rate
	timeout 180 "$NATSCLI" --server "nats://127.0.0.1:$NATS_CLIENT_PORT" bench js pub async "bench.$name" \
		--clients "$clients" --msgs "$msgs" --size 128 --storage file --create --purge \
		--stream "bench_$name" --no-progress >"$out" 2>&1 || return 1
	# "NATS JetStream asynchronous publisher stats: 10,653 msgs/sec ~ ..." (one client) or
	# "... aggregated stats: 9,049 msgs/sec ~ ..." (several).
	rate=$(sed -n 's/.*stats: \([0-9,]*\) msgs\/sec.*/\1/p' "$out" | tail -n1 | tr -d ,)
	[[ -n $rate ]] || return 1
	echo "$rate"
}

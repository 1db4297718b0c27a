# Shared by bench/compare.sh and bench/idle-memory.sh: build tern, install and start the peer
# brokers on 127.0.0.1, wait for them, stop them by PID. Source it; it expects $WORK (a temp
# directory) and $ROOT (the repository) to be set.

# Brokers started by start_* are recorded here and stopped by stop_all (trap it on EXIT).
declare -A BROKER_PID=()
declare -A BROKER_PORT=()

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

raise_nofile() {
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	log "open files limit: $(ulimit -n)"
}

build_tern() {
	log "building tern..."
	(cd "$ROOT" && go build -o "$WORK/tern" ./cmd/tern) || die "go build failed"
	TERN="$WORK/tern"
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

# free_port: a port on 127.0.0.1 nobody listens on.
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
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

start_tern() {
	local port
	port=$(free_port)
	"$TERN" serve --mqtt "127.0.0.1:$port" --http "" --unix "" --log-level warn >"$WORK/tern.log" 2>&1 &
	BROKER_PID[tern]=$!
	BROKER_PORT[tern]=$port
	wait_port tern "$port"
}

start_mosquitto() {
	local port conf="$WORK/mosquitto.conf"
	port=$(free_port)
	# max_queued_messages and max_inflight_messages stay at their defaults.
	cat >"$conf" <<-EOF
		listener $port 127.0.0.1
		allow_anonymous true
		persistence false
		log_dest stderr
		log_type error
		log_type warning
	EOF
	"$MOSQUITTO" -c "$conf" >"$WORK/mosquitto.log" 2>&1 &
	BROKER_PID[mosquitto]=$!
	BROKER_PORT[mosquitto]=$port
	wait_port mosquitto "$port"
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
	wait_port nats "$port"
}

start_broker() {
	case $1 in
	tern) start_tern ;;
	mosquitto) start_mosquitto ;;
	nats) start_nats ;;
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

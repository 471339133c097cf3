#!/usr/bin/env bash
# bench-http.sh: gyre (io_uring reactors) vs the net baseline, both in
# bin/gyre-echo -mode http, under wrk on pinned cores.
#
#   make bench-http                       # builds, then runs this script
#   CONNS="64" RUNS=5 DURATION=10s ./scripts/bench-http.sh
#
# For every connection count, the backends run alternately (uring, net,
# uring, net, ...), each run on a freshly started server: warm-up wrk run,
# then the measured wrk run. The server's CPU time (utime+stime of the whole
# process, /proc/PID/stat fields 14 and 15) is sampled right before and right
# after the measured run, which gives requests per server CPU-second.
#
# Environment (defaults in brackets):
#   CONNS       connection counts                        ["16 64 512"]
#   DURATION    measured wrk run per backend and count   [5s]
#   WARMUP      warm-up wrk run before each measured run [1s]
#   RUNS        measured runs per backend and count      [3]
#   CPU_SERVER  core the server is pinned to             [0]
#   CPU_LOAD    core wrk is pinned to                    [1]
#   PORT        127.0.0.1 port for the server            [7480]
#   REACTORS    -reactors for the uring backend          [1]
#   RESULTS_DIR where the per-run TSV and summary go     [bench/results]
#   START_TIMEOUT seconds to wait for the server to listen [10]
#   QUIET_BUSY  before each run, wait until both cores are below this busy
#               percentage over 0.5s (other jobs on a shared machine)  [10]
#   QUIET_TIMEOUT seconds to wait for that, then run anyway, with a warning [5]
#
# Output: a markdown table per connection count on stdout (also written to
# RESULTS_DIR/http-<timestamp>.md), raw per-run numbers in
# RESULTS_DIR/http-<timestamp>.tsv, wrk outputs and server logs in
# RESULTS_DIR/tmp/http-<timestamp>/ (git-ignored).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNS=${CONNS:-"16 64 512"}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
RUNS=${RUNS:-3}
CPU_SERVER=${CPU_SERVER:-0}
CPU_LOAD=${CPU_LOAD:-1}
PORT=${PORT:-7480}
REACTORS=${REACTORS:-1}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
START_TIMEOUT=${START_TIMEOUT:-10}
QUIET_BUSY=${QUIET_BUSY:-10}
QUIET_TIMEOUT=${QUIET_TIMEOUT:-5}
BIN=bin/gyre-echo
HOST=127.0.0.1
URL="http://$HOST:$PORT/"
BACKENDS=(uring net)

die() {
	echo "bench-http: FAIL: $*" >&2
	exit 1
}
warn() { echo "bench-http: warning: $*" >&2; }
log() { echo "bench-http: $*" >&2; }

# ---------------------------------------------------------------- checks

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
for c in $CONNS; do
	[[ $c =~ ^[1-9][0-9]*$ ]] || die "CONNS must be positive integers, not '$c'"
done
[[ -n ${CONNS// /} ]] || die "CONNS is empty"
for d in "$DURATION" "$WARMUP"; do
	[[ $d =~ ^[1-9][0-9]*[smh]?$ ]] || die "DURATION/WARMUP must look like 5s, 1m (wrk syntax), not '$d'"
done
if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
	die "PORT must be 1-65535, not '$PORT'"
fi
[[ $REACTORS =~ ^[1-9][0-9]*$ ]] || die "REACTORS must be a positive integer, not '$REACTORS'"
[[ $START_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "START_TIMEOUT must be whole seconds"
[[ $QUIET_BUSY =~ ^[0-9]+$ && $QUIET_TIMEOUT =~ ^[0-9]+$ ]] || die "QUIET_BUSY and QUIET_TIMEOUT must be whole numbers"
[[ $CPU_SERVER =~ ^[0-9]+$ && $CPU_LOAD =~ ^[0-9]+$ ]] || die "CPU_SERVER and CPU_LOAD must be single CPU numbers"
[[ $CPU_SERVER != "$CPU_LOAD" ]] || die "CPU_SERVER and CPU_LOAD must differ (both are $CPU_SERVER)"

[[ -x $BIN ]] || die "$BIN not found: run 'make build' (or 'make bench-http')"
for tool in taskset getconf awk sort; do
	command -v "$tool" >/dev/null || die "'$tool' not found in PATH"
done
for cpu in "$CPU_SERVER" "$CPU_LOAD"; do
	taskset -c "$cpu" true 2>/dev/null || die "cannot pin to CPU $cpu (taskset -c $cpu failed; nproc=$(nproc))"
	grep -q "^cpu$cpu " /proc/stat || die "CPU $cpu not in /proc/stat"
done

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
	SUDO=(sudo)
fi

# Install wrk when missing; refresh the package lists only if the plain
# install fails (stale or empty lists).
if ! command -v wrk >/dev/null; then
	log "wrk not found, installing it with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	if ! "${SUDO[@]}" apt-get install -y wrk; then
		"${SUDO[@]}" apt-get update || die "apt-get update failed"
		"${SUDO[@]}" apt-get install -y wrk || die "apt-get install -y wrk failed"
	fi
	command -v wrk >/dev/null || die "wrk still not in PATH after installing it"
fi

CLK_TCK=$(getconf CLK_TCK)
[[ $CLK_TCK =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK gave '$CLK_TCK'"

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }
port_open && die "something already listens on $HOST:$PORT; set PORT to a free port"

# ---------------------------------------------------------------- files

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS_DIR"
TSV="$RESULTS_DIR/http-$STAMP.tsv"
SUMMARY="$RESULTS_DIR/http-$STAMP.md"
RAW="$RESULTS_DIR/tmp/http-$STAMP"
mkdir -p "$RAW"

# ---------------------------------------------------------------- server

SERVER_PID=""

stop_server() {
	local pid=$SERVER_PID i state=""
	[[ -n $pid ]] || return 0
	SERVER_PID=""
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		state=$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null || true)
		[[ -z $state || $state == Z ]] && break
		sleep 0.1
	done
	if [[ -n $state && $state != Z ]]; then
		warn "server $pid ignored SIGTERM for 5s, killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	stop_server
	if ((rc != 0)); then
		echo "bench-http: exit status $rc; partial results: $TSV, raw outputs: $RAW" >&2
	fi
}
trap cleanup EXIT
trap 'echo "bench-http: interrupted" >&2; exit 130' INT
trap 'echo "bench-http: terminated" >&2; exit 143' TERM

SERVER_CMD=()

# start_server BACKEND LOGFILE: starts the server pinned to CPU_SERVER and
# waits until it logs "listening" and the port accepts connections.
start_server() {
	local backend=$1 slog=$2 deadline
	SERVER_CMD=(taskset -c "$CPU_SERVER" "$BIN" -addr "$HOST:$PORT" -mode http -backend "$backend")
	[[ $backend == uring ]] && SERVER_CMD+=(-reactors "$REACTORS")
	SERVER_CMD+=(-grace 1s)
	port_open && die "$HOST:$PORT is already taken before starting the $backend server"
	"${SERVER_CMD[@]}" >"$slog" 2>&1 &
	SERVER_PID=$!
	deadline=$((SECONDS + START_TIMEOUT))
	while :; do
		if ! server_alive; then
			cat "$slog" >&2
			die "$backend server exited before listening on $HOST:$PORT (log above: $slog)"
		fi
		if grep -q 'msg=listening' "$slog" && port_open; then
			break
		fi
		if ((SECONDS >= deadline)); then
			cat "$slog" >&2
			die "$backend server not listening on $HOST:$PORT after ${START_TIMEOUT}s (log: $slog)"
		fi
		sleep 0.05
	done
}

# server_alive: the server still runs (a dead child stays a zombie until
# waited for, so kill -0 alone is not enough).
server_alive() {
	local state
	[[ -n $SERVER_PID ]] || return 1
	state=$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$SERVER_PID/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

# server_ticks: utime+stime (clock ticks) of the whole server process, all
# threads. The comm field may hold spaces, so split after the last ')'.
server_ticks() {
	local stat rest f
	server_alive || die "server (pid ${SERVER_PID:-?}) died"
	stat=$(<"/proc/$SERVER_PID/stat") || die "cannot read /proc/$SERVER_PID/stat"
	rest=${stat##*) }
	read -r -a f <<<"$rest"
	# rest starts at field 3 (state): field 14 is f[11], field 15 is f[12].
	echo $((f[11] + f[12]))
}

# cpu_ticks N: "busy steal" ticks of CPU N from /proc/stat (busy = user +
# nice + system + irq + softirq).
cpu_ticks() {
	awk -v cpu="cpu$1" '$1 == cpu { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat
}

# wait_quiet: waits (up to QUIET_TIMEOUT) until neither core is busier than
# QUIET_BUSY percent over half a second. Prints "yes" if it got there, "no".
wait_quiet() {
	local deadline=$((SECONDS + QUIET_TIMEOUT)) s0 l0 s1 l1 _steal
	while :; do
		read -r s0 _steal < <(cpu_ticks "$CPU_SERVER")
		read -r l0 _steal < <(cpu_ticks "$CPU_LOAD")
		sleep 0.5
		read -r s1 _steal < <(cpu_ticks "$CPU_SERVER")
		read -r l1 _steal < <(cpu_ticks "$CPU_LOAD")
		# ticks in 0.5s -> percent: ticks * 200 / CLK_TCK
		if (((s1 - s0) * 200 / CLK_TCK <= QUIET_BUSY && (l1 - l0) * 200 / CLK_TCK <= QUIET_BUSY)); then
			echo yes
			return
		fi
		if ((SECONDS >= deadline)); then
			echo no
			return
		fi
	done
}

# ---------------------------------------------------------------- wrk

# run_wrk CONNS DURATION OUTFILE: wrk pinned to CPU_LOAD; fails on wrk
# errors, socket errors and non-2xx/3xx responses.
run_wrk() {
	local conns=$1 dur=$2 out=$3
	if ! taskset -c "$CPU_LOAD" wrk -t1 -c"$conns" -d"$dur" --latency "$URL" >"$out" 2>&1; then
		cat "$out" >&2
		die "wrk exited non-zero (output: $out)"
	fi
	if grep -q 'Socket errors' "$out"; then
		cat "$out" >&2
		die "wrk reported socket errors with $conns connections: $(grep 'Socket errors' "$out")"
	fi
	if grep -q 'Non-2xx or 3xx' "$out"; then
		cat "$out" >&2
		die "wrk reported bad responses with $conns connections: $(grep 'Non-2xx or 3xx' "$out")"
	fi
	grep -q '^Requests/sec:' "$out" || {
		cat "$out" >&2
		die "no Requests/sec in wrk output ($out)"
	}
	server_alive || die "server died during wrk run (see $out)"
}

# wrk_field OUTFILE WHAT: req_s, total (requests completed), p50_ms or p99_ms
# from wrk --latency output.
wrk_field() {
	awk -v what="$2" '
	function ms(v) {
		if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
		if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
		if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
		if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
		return "nan"
	}
	/^Requests\/sec:/                  { req = $2 }
	/ requests in /                    { total = $1 }
	/Latency Distribution/             { dist = 1; next }
	dist && $1 == "50%"                { p50 = ms($2) }
	dist && $1 == "99%"                { p99 = ms($2) }
	END {
		if (what == "req_s")  v = req
		if (what == "total")  v = total
		if (what == "p50_ms") v = p50
		if (what == "p99_ms") v = p99
		if (v == "") exit 1
		print v
	}' "$1" || die "cannot parse $2 from $1"
}

# ---------------------------------------------------------------- env

go_version=$(go version "$BIN" 2>/dev/null | awk '{print $2}' || true)
[[ -n $go_version ]] || go_version=$(go version 2>/dev/null | awk '{print $3}' || echo unknown)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git status --porcelain 2>/dev/null | wc -l)
invocation="CONNS=\"$CONNS\" DURATION=$DURATION WARMUP=$WARMUP RUNS=$RUNS CPU_SERVER=$CPU_SERVER CPU_LOAD=$CPU_LOAD PORT=$PORT REACTORS=$REACTORS ./scripts/bench-http.sh"

env_block() {
	echo "- kernel: $(uname -r)"
	echo "- CPU: ${cpu_model:-unknown}, $(nproc) online cores ($(nproc --all) total)"
	echo "- Go: $go_version ($BIN), wrk: $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')"
	echo "- tree: $git_rev, $git_dirty uncommitted paths at run time"
	echo "- command: \`$invocation\`"
	echo "- server: \`taskset -c $CPU_SERVER $BIN -addr $HOST:$PORT -mode http -backend uring -reactors $REACTORS\`" \
		"/ \`taskset -c $CPU_SERVER $BIN -addr $HOST:$PORT -mode http -backend net\` (plus \`-grace 1s\`)"
	echo "- load: \`taskset -c $CPU_LOAD wrk -t1 -cN -d$DURATION --latency $URL\`, after a $WARMUP warm-up with the same N"
	echo "- started: $STAMP, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# secs 5s|2m|1h|7: seconds in a wrk duration.
secs() {
	local n=${1%[smh]}
	case $1 in
	*m) echo $((n * 60)) ;;
	*h) echo $((n * 3600)) ;;
	*) echo "$n" ;;
	esac
}

n_conns=$(wc -w <<<"$CONNS")
per_run=$(($(secs "$DURATION") + $(secs "$WARMUP") + 1))
echo "# bench-http environment"
echo
env_block
echo
log "$n_conns connection counts x ${#BACKENDS[@]} backends x $RUNS runs, ~$((n_conns * ${#BACKENDS[@]} * RUNS * per_run))s"

# ---------------------------------------------------------------- runs

printf 'conns\tbackend\trun\treq_s\tp50_ms\tp99_ms\tserver_cpu_s\treq_per_cpu_s\twall_s\tcpu_server_busy_s\tcpu_load_busy_s\tsteal_s\tloadavg1\tquiet_before\tserver_core_other_s\n' >"$TSV"

for conns in $CONNS; do
	for ((run = 1; run <= RUNS; run++)); do
		for backend in "${BACKENDS[@]}"; do
			tag="c$conns-$backend-$run"
			quiet=$(wait_quiet)
			[[ $quiet == yes ]] || warn "$tag: CPU $CPU_SERVER or $CPU_LOAD still >$QUIET_BUSY% busy with other work after ${QUIET_TIMEOUT}s; running anyway"
			start_server "$backend" "$RAW/$tag.server.log"
			run_wrk "$conns" "$WARMUP" "$RAW/$tag.warmup.txt"

			load1=$(cut -d' ' -f1 /proc/loadavg)
			read -r s_busy0 s_steal0 < <(cpu_ticks "$CPU_SERVER")
			read -r l_busy0 l_steal0 < <(cpu_ticks "$CPU_LOAD")
			t0=$(server_ticks)
			w0=$(date +%s.%N)
			run_wrk "$conns" "$DURATION" "$RAW/$tag.wrk.txt"
			w1=$(date +%s.%N)
			t1=$(server_ticks)
			read -r s_busy1 s_steal1 < <(cpu_ticks "$CPU_SERVER")
			read -r l_busy1 l_steal1 < <(cpu_ticks "$CPU_LOAD")

			stop_server
			req_s=$(wrk_field "$RAW/$tag.wrk.txt" req_s)
			total=$(wrk_field "$RAW/$tag.wrk.txt" total)
			p50=$(wrk_field "$RAW/$tag.wrk.txt" p50_ms)
			p99=$(wrk_field "$RAW/$tag.wrk.txt" p99_ms)
			line=$(awk -v c="$conns" -v b="$backend" -v r="$run" -v rq="$req_s" -v n="$total" \
				-v p50="$p50" -v p99="$p99" -v dt=$((t1 - t0)) -v hz="$CLK_TCK" \
				-v w0="$w0" -v w1="$w1" -v sb=$((s_busy1 - s_busy0)) -v lb=$((l_busy1 - l_busy0)) \
				-v st=$((s_steal1 - s_steal0 + l_steal1 - l_steal0)) -v la="$load1" -v q="$quiet" 'BEGIN {
				cpu = dt / hz; wall = w1 - w0
				# all n requests of the measured run fall inside the CPU sample
				rpc = (cpu > 0) ? n / cpu : "nan"
				# busy time on the server core not charged to the server:
				# other processes, interrupts while idle (tick accounting)
				other = sb / hz - cpu
				printf "%d\t%s\t%d\t%.2f\t%.3f\t%.3f\t%.2f\t%.0f\t%.3f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%.2f\n",
					c, b, r, rq, p50, p99, cpu, rpc, wall, sb / hz, lb / hz, st / hz, la, q, other
			}')
			printf '%s\n' "$line" >>"$TSV"
			IFS=$'\t' read -r -a v <<<"$line"
			log "$(printf 'c=%-4s %-5s run %d: %10.0f req/s  p50 %7.3fms  p99 %7.3fms  server %5.2f CPU-s  %8.0f req/CPU-s' \
				"$conns" "$backend" "$run" "${v[3]}" "${v[4]}" "${v[5]}" "${v[6]}" "${v[7]}")"
			# Other work on the server core does not enter the per-process
			# CPU time, but it takes cycles from the server: flag it.
			if awk -v o="${v[14]}" -v w="${v[8]}" -v st="${v[11]}" 'BEGIN {
				exit !(o > 0.05 * w || st > 0.02 * w) }'; then
				warn "$tag: CPU $CPU_SERVER busy ${v[9]}s, of which ${v[14]}s not the server's (other jobs or interrupts); steal ${v[11]}s"
			fi
		done
	done
done

# ---------------------------------------------------------------- summary

# stats CONNS BACKEND COLUMN: "median min max" of a TSV column.
stats() {
	awk -F'\t' -v c="$1" -v b="$2" -v k="$3" 'NR > 1 && $1 == c && $2 == b { print $k }' "$TSV" |
		sort -g | awk '{ a[NR] = $1 } END {
			if (NR == 0) { print "nan nan nan"; exit }
			m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			print m, a[1], a[NR] }'
}

# row LABEL COLUMN PRINTF-FORMAT RATIO(yes|no)
row() {
	local label=$1 col=$2 fmt=$3 ratio=$4 u n
	u=$(stats "$conns" uring "$col")
	n=$(stats "$conns" net "$col")
	awk -v label="$label" -v fmt="$fmt" -v ratio="$ratio" -v u="$u" -v n="$n" 'BEGIN {
		split(u, U, " "); split(n, N, " ")
		cell_u = sprintf(fmt " (" fmt "–" fmt ")", U[1], U[2], U[3])
		cell_n = sprintf(fmt " (" fmt "–" fmt ")", N[1], N[2], N[3])
		r = (ratio == "yes" && N[1] > 0) ? sprintf("**%.2fx**", U[1] / N[1]) : ""
		printf "| %s | %s | %s | %s |\n", label, cell_u, cell_n, r
	}'
}

{
	echo "## HTTP fixed response (wrk), $STAMP"
	echo
	env_block
	echo "- raw per-run numbers: \`$TSV\`"
	echo
	echo "Median (min–max) of $RUNS runs per backend; uring/net is the ratio of medians."
	echo "\"server core busy, not the server\" is CPU $CPU_SERVER busy time (/proc/stat) minus the"
	echo "server's utime+stime: other jobs or interrupts on the server core; should be ~0."
	for conns in $CONNS; do
		echo
		echo "### $conns connections"
		echo
		echo "| metric | uring | net | uring/net |"
		echo "|---|---:|---:|---:|"
		row "requests/s" 4 "%.0f" yes
		row "p50 latency (ms)" 5 "%.3f" no
		row "p99 latency (ms)" 6 "%.3f" no
		row "server CPU-s (in ${DURATION})" 7 "%.2f" no
		row "server core busy, not the server (s)" 15 "%.2f" no
		row "load core busy (s)" 11 "%.2f" no
		row "requests / server CPU-s" 8 "%.0f" yes
	done
} >"$SUMMARY"

echo
cat "$SUMMARY"
echo
log "raw per-run results: $TSV"
log "summary: $SUMMARY; wrk outputs and server logs: $RAW"

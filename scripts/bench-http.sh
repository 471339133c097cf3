#!/usr/bin/env bash
# bench-http.sh: gyre's reactors (on the io_uring engine, and on the epoll
# engine) vs the net baseline, all in bin/gyre-echo -mode http, and
# optionally the C liburing reference server, under wrk on pinned cores.
#
#   make bench-http                       # builds, then runs this script
#   CONNS="64" RUNS=5 DURATION=10s ./scripts/bench-http.sh
#   BACKENDS="uring epoll c net" ./scripts/bench-http.sh   # every backend, each /net
#
# Backends (BACKENDS, in run order; net is required: every ratio is to it):
#   uring  bin/gyre-echo -backend gyre -engine io_uring -reactors REACTORS
#   epoll  bin/gyre-echo -backend gyre -engine epoll -reactors REACTORS
#   net    bin/gyre-echo -backend net (goroutine per connection)
#   c      the C liburing reference, C_SRC built with gcc against liburing
#          (apt-get installs liburing-dev when its header is missing), run
#          as `uring_http PORT 1`: one thread, one ring, multishot accept and
#          recv into a provided-buffer ring, SINGLE_ISSUER|DEFER_TASKRUN.
#          Its thread pins itself to CPU 0, so it needs CPU_SERVER=0. The
#          file is outside this repository (a limit reference, not part of
#          the project): without it, leave c out.
# The gyre backends must log the engine they were asked for on their
# "listening" line (engine=...); the run stops if one does not.
#
# For every connection count, the backends run alternately (uring, net,
# uring, net, ...), each run on a freshly started server: warm-up wrk run,
# then the measured wrk run. The server's CPU time (utime+stime of the whole
# process, /proc/PID/stat fields 14 and 15) is sampled right before and right
# after the measured run, which gives requests per server CPU-second.
#
# Environment (defaults in brackets):
#   BACKENDS    backends, in run order (see above)       ["uring net"]
#   C_SRC       the C reference's source (backend c)     [../shared/reference/uring_http.c]
#   CONNS       connection counts                        ["16 64 512"]
#   DURATION    measured wrk run per backend and count   [5s]
#   WARMUP      warm-up wrk run before each measured run [1s]
#   RUNS        measured runs per backend and count      [3]
#   CPU_SERVER  core the server is pinned to             [0]
#   CPU_LOAD    core wrk is pinned to                    [1]
#   PORT        127.0.0.1 port for the server            [7480]
#   REACTORS    -reactors for the uring and epoll backends [1]
#   RESULTS_DIR where the per-run TSV and summary go     [bench/results]
#   START_TIMEOUT seconds to wait for the server to listen [10]
#   QUIET_BUSY  before each run, wait until both cores are below this busy
#               percentage over 0.5s (other jobs on a shared machine)  [10]
#   QUIET_TIMEOUT seconds to wait for that, then run anyway, with a warning [15]
#   CONTENDED_PCT a run is "contended" when other processes (all but the
#               server, wrk and this script; /proc/*/stat) used more CPU
#               time than this percentage of the run (an idle machine
#               shows 2-4%: agents, shells, timers)                     [10]
#   RETRIES     repeat a contended run up to this many times; the repeated
#               attempts stay in the TSV (kept=no), not in the summary [2]
#   NOISE_BUDGET  seconds, in all, spent waiting for quiet and repeating
#               contended runs; when spent, runs are kept as they come [90]
#   SUMMARIZE   path of an earlier run's TSV: print its tables, run nothing
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
QUIET_TIMEOUT=${QUIET_TIMEOUT:-15}
CONTENDED_PCT=${CONTENDED_PCT:-10}
RETRIES=${RETRIES:-2}
NOISE_BUDGET=${NOISE_BUDGET:-90}
BIN=bin/gyre-echo
HOST=127.0.0.1
URL="http://$HOST:$PORT/"
read -r -a BACKENDS <<<"${BACKENDS:-uring net}"
C_SRC=${C_SRC:-../shared/reference/uring_http.c}

die() {
	echo "bench-http: FAIL: $*" >&2
	exit 1
}
warn() { echo "bench-http: warning: $*" >&2; }
log() { echo "bench-http: $*" >&2; }

# ---------------------------------------------------------------- summary

# TSV columns, 1-based. C_RPB is derived, not stored: requests per busy
# second of the server core, rpc * server_cpu_s / server_core_busy_s.
C_KEPT=5 C_CONT=6 C_REQ=7 C_P50=8 C_P99=9 C_CPU=10 C_RPC=11 C_WALL=12 C_SBUSY=13 C_OTHER=14 C_WRK=15
C_LOTHER=17 C_OTHERS=20 C_RPB=21

# with_derived: awk code that fills in the derived column.
with_derived='{ if ($'"$C_SBUSY"' > 0) $'"$C_RPB"' = $'"$C_RPC"' * $'"$C_CPU"' / $'"$C_SBUSY"' }'

# stats CONNS BACKEND COLUMN: "median min max" of a TSV column.
stats() {
	awk -F'\t' -v c="$1" -v b="$2" -v k="$3" -v kept="$C_KEPT" \
		"$with_derived"' NR > 1 && $1 == c && $2 == b && $kept == "yes" && $k != "" { print $k }' "$TSV" |
		sort -g | awk '{ a[NR] = $1 } END {
			if (NR == 0) { print "nan nan nan"; exit }
			m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			print m, a[1], a[NR] }'
}

# COLS: the backends in table order: as BACKENDS (or the TSV) lists them,
# net last; every other column has its ratio to net.
COLS=()
set_cols() {
	local b
	COLS=()
	for b in "$@"; do
		[[ $b == net ]] || COLS+=("$b")
	done
	COLS+=(net)
}

# contended_row: how many kept runs were contended, and how many were
# repeated because of it, per backend.
contended_row() {
	awk -F'\t' -v c="$conns" -v kept="$C_KEPT" -v cont="$C_CONT" -v cols="${COLS[*]}" '
		NR > 1 && $1 == c {
			if ($kept == "yes") { runs[$2]++; if ($cont == "yes") bad[$2]++ }
			else redone[$2]++
		}
		END {
			nb = split(cols, B, " ")
			printf "| contended runs kept / repeated |"
			for (i = 1; i <= nb; i++) printf " %d of %d / %d |", bad[B[i]], runs[B[i]], redone[B[i]]
			for (i = 1; i < nb; i++) printf " |"
			printf "\n"
		}' "$TSV"
}

# pair_row LABEL COLUMN: for every backend but net, the median (min–max)
# of backend/net for each run number (the runs of one number ran back to
# back).
pair_row() {
	awk -F'\t' -v c="$conns" -v k="$2" -v kept="$C_KEPT" -v label="$1" -v cols="${COLS[*]}" "$with_derived"'
		NR > 1 && $1 == c && $kept == "yes" { v[$2, $3] = $k; runs[$3] = 1 }
		END {
			nb = split(cols, B, " ")
			printf "| %s |", label
			for (i = 1; i <= nb; i++) printf " |"
			for (b = 1; b < nb; b++) {
				n = 0
				split("", a)
				for (r in runs)
					if (((B[b], r) in v) && (("net", r) in v) && v["net", r] > 0)
						a[++n] = v[B[b], r] / v["net", r]
				if (n == 0) { printf " n/a |"; continue }
				for (i = 2; i <= n; i++)
					for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
				m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
				printf " %.2fx (%.2f–%.2f) |", m, a[1], a[n]
			}
			printf "\n"
		}' "$TSV"
}

# row LABEL COLUMN PRINTF-FORMAT RATIO(yes|no): median (min–max) per
# backend, then (RATIO yes) each backend's median over net's.
row() {
	local label=$1 col=$2 fmt=$3 ratio=$4 b all=""
	for b in "${COLS[@]}"; do
		all+="$(stats "$conns" "$b" "$col");"
	done
	awk -v label="$label" -v fmt="$fmt" -v ratio="$ratio" -v all="$all" 'BEGIN {
		nb = split(all, S, ";") - 1 # the trailing ";" leaves an empty last field
		printf "| %s |", label
		for (i = 1; i <= nb; i++) {
			split(S[i], V, " ")
			printf " %s |", sprintf(fmt " (" fmt "–" fmt ")", V[1], V[2], V[3])
		}
		split(S[nb], N, " ")
		for (i = 1; i < nb; i++) {
			split(S[i], V, " ")
			r = (ratio == "yes" && N[1] > 0) ? sprintf("**%.2fx**", V[1] / N[1]) : ""
			printf " %s |", r
		}
		printf "\n"
	}'
}

# tables: the markdown tables for every connection count in TSV.
tables() {
	local conns runs b head align ratios=() others=()
	runs=$(awk -F'\t' -v kept="$C_KEPT" -v first="${COLS[0]}" 'NR > 1 && $kept == "yes" && $2 == first { n[$1]++ }
		END { for (c in n) if (n[c] > m) m = n[c]; print m + 0 }' "$TSV")
	head="| metric |"
	align="|---|"
	for b in "${COLS[@]}"; do
		head+=" $b |"
		align+="---:|"
	done
	for b in "${COLS[@]}"; do
		[[ $b == net ]] && continue
		head+=" $b/net |"
		align+="---:|"
		ratios+=("$b/net")
		others+=("$b")
	done
	if ((${#ratios[@]} == 1)); then
		echo "Median (min–max) of $runs runs per backend; ${ratios[0]} is the ratio of the medians, and"
		echo "\"per run pair\" the median (min–max) of the ratios of the ${others[0]} and net runs that ran"
	else
		local list
		list=$(printf '%s, ' "${ratios[@]:0:${#ratios[@]}-1}")
		list="${list%, } and ${ratios[-1]}"
		echo "Median (min–max) of $runs runs per backend; $list are the ratios of the medians to net's, and"
		echo "\"per run pair\" the median (min–max) of the ratios of each backend's runs and the net runs that ran"
	fi
	echo "back to back. \"Server CPU-s\" is the server process's utime+stime; \"server core busy"
	echo "s\" is the server core's busy time (wall minus idle in /proc/stat), which also holds"
	echo "work the kernel does on that core for nobody's account (interrupts, idle entry and exit)."
	echo "\"Other processes\" is the CPU time of every other process during the run; a run where"
	echo "it passes CONTENDED_PCT of the run is \"contended\" and repeated while RETRIES and"
	echo "NOISE_BUDGET allow; repeated attempts are in the TSV only."
	while read -r conns; do
		echo
		echo "### $conns connections"
		echo
		echo "$head"
		echo "$align"
		row "requests/s" "$C_REQ" "%.0f" yes
		pair_row "requests/s, per run pair" "$C_REQ"
		row "p50 latency (ms)" "$C_P50" "%.3f" no
		row "p99 latency (ms)" "$C_P99" "%.3f" no
		row "server CPU-s per run" "$C_CPU" "%.2f" no
		row "requests / server CPU-s" "$C_RPC" "%.0f" yes
		pair_row "requests / server CPU-s, per run pair" "$C_RPC"
		row "server core busy s, not the server's" "$C_OTHER" "%.2f" no
		row "requests / server core busy s" "$C_RPB" "%.0f" yes
		row "wrk CPU-s" "$C_WRK" "%.2f" no
		row "wrk core busy s, not wrk's" "$C_LOTHER" "%.2f" no
		row "other processes, CPU-s" "$C_OTHERS" "%.2f" no
		contended_row
	done < <(awk -F'\t' 'NR > 1 && !seen[$1]++ { print $1 }' "$TSV")
}

# SUMMARIZE=FILE.tsv: only print the tables of an earlier run's TSV.
if [[ -n ${SUMMARIZE:-} ]]; then
	[[ -r $SUMMARIZE ]] || die "SUMMARIZE: cannot read '$SUMMARIZE'"
	head -n 1 "$SUMMARIZE" | grep -q $'^conns\tbackend\trun\tattempt\tkept' || die "SUMMARIZE: $SUMMARIZE is not a bench-http TSV"
	TSV=$SUMMARIZE
	mapfile -t tsv_backends < <(awk -F'\t' 'NR > 1 && !seen[$2]++ { print $2 }' "$TSV")
	set_cols "${tsv_backends[@]}"
	tables
	exit 0
fi

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
((${#BACKENDS[@]} > 0)) || die "BACKENDS is empty"
declare -A seen_backend=()
for b in "${BACKENDS[@]}"; do
	case $b in
	uring | epoll | net | c) ;;
	*) die "BACKENDS: unknown backend '$b' (want uring, epoll, net, c)" ;;
	esac
	[[ -z ${seen_backend[$b]:-} ]] || die "BACKENDS names $b twice"
	seen_backend[$b]=1
done
[[ -n ${seen_backend[net]:-} ]] || die "BACKENDS must include net: every ratio is to it"
if [[ -n ${seen_backend[c]:-} ]]; then
	[[ $CPU_SERVER == 0 ]] || die "backend c: the C reference pins its thread to CPU 0 itself; run with CPU_SERVER=0 (and a CPU_LOAD other than 0) or leave c out"
	[[ -r $C_SRC ]] || die "backend c: no C reference at $C_SRC (set C_SRC, or leave c out of BACKENDS)"
fi
set_cols "${BACKENDS[@]}"
[[ $START_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "START_TIMEOUT must be whole seconds"
for var in QUIET_BUSY QUIET_TIMEOUT CONTENDED_PCT RETRIES NOISE_BUDGET; do
	[[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a whole number, not '${!var}'"
done
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

# apt_install PACKAGE: installs it with apt-get; refreshes the package
# lists only if the plain install fails (stale or empty lists).
apt_install() {
	command -v apt-get >/dev/null || die "$1 is needed and there is no apt-get to install it; install it by hand"
	export DEBIAN_FRONTEND=noninteractive
	if ! "${SUDO[@]}" apt-get install -y "$1" >&2; then
		"${SUDO[@]}" apt-get update >&2 || die "apt-get update failed"
		"${SUDO[@]}" apt-get install -y "$1" >&2 || die "apt-get install -y $1 failed"
	fi
}

if ! command -v wrk >/dev/null; then
	log "wrk not found, installing it with apt-get"
	apt_install wrk
	command -v wrk >/dev/null || die "wrk still not in PATH after installing it"
fi

# The C reference: gcc and liburing's header and library.
liburing_ok() { echo '#include <liburing.h>' | gcc -x c -E - >/dev/null 2>&1; }
if [[ -n ${seen_backend[c]:-} ]]; then
	if ! command -v gcc >/dev/null; then
		log "gcc not found (backend c), installing it with apt-get"
		apt_install gcc
	fi
	if ! liburing_ok; then
		log "liburing.h not found (backend c), installing liburing-dev with apt-get"
		apt_install liburing-dev
		liburing_ok || die "liburing.h still not found after installing liburing-dev"
	fi
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

# Run a private copy of the binary: a concurrent `make build` must not swap
# the server between runs.
SERVER_BIN="$RAW/gyre-echo"
cp "$BIN" "$SERVER_BIN"
BIN_SUM=$(sha256sum "$SERVER_BIN" | cut -c1-12)

# Backend c: build the C reference into RAW, as its README says.
C_BIN=""
C_DESC=""
if [[ -n ${seen_backend[c]:-} ]]; then
	C_BIN="$RAW/uring_http"
	log "building the C reference: gcc -O2 -o $C_BIN $C_SRC -luring -lpthread"
	gcc -O2 -o "$C_BIN" "$C_SRC" -luring -lpthread >&2 || die "building $C_SRC failed"
	C_DESC="$C_SRC sha256 $(sha256sum "$C_SRC" | cut -c1-12), gcc $(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion),"
	C_DESC+=" liburing $(dpkg-query -W -f='${Version}' liburing-dev 2>/dev/null || echo '?')"
fi

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

WRK_PID=""
cleanup() {
	local rc=$?
	if [[ -n $WRK_PID ]]; then
		kill -TERM "$WRK_PID" 2>/dev/null || true
		wait "$WRK_PID" 2>/dev/null || true
	fi
	stop_server
	[[ -z ${SERVER_BIN:-} ]] || rm -f "$SERVER_BIN"
	[[ -z ${C_BIN:-} ]] || rm -f "$C_BIN"
	if ((rc != 0)); then
		echo "bench-http: exit status $rc; partial results: $TSV, raw outputs: $RAW" >&2
	fi
}
trap cleanup EXIT
trap 'echo "bench-http: interrupted" >&2; exit 130' INT
trap 'echo "bench-http: terminated" >&2; exit 143' TERM

SERVER_CMD=()
SERVER_LOG=/dev/null

# server_args BACKEND: sets SERVER_CMD (unpinned) and ENGINE, the engine
# a gyre backend must name on its listening line ("" for the others).
ENGINE=""
server_args() {
	ENGINE=""
	case $1 in
	uring) ENGINE=io_uring ;;
	epoll) ENGINE=epoll ;;
	esac
	case $1 in
	uring | epoll) SERVER_CMD=("$SERVER_BIN" -addr "$HOST:$PORT" -mode http -backend gyre -engine "$ENGINE" -reactors "$REACTORS" -grace 1s) ;;
	net) SERVER_CMD=("$SERVER_BIN" -addr "$HOST:$PORT" -mode http -backend net -grace 1s) ;;
	c) SERVER_CMD=("$C_BIN" "$PORT" 1) ;;
	esac
}

# start_server BACKEND LOGFILE: starts the server pinned to CPU_SERVER and
# waits until it logs "listening" (gyre-echo; the C reference logs
# nothing) and the port accepts connections. A gyre backend must name the
# engine it was asked for.
start_server() {
	local backend=$1 slog=$2 deadline logged
	server_args "$backend"
	SERVER_CMD=(taskset -c "$CPU_SERVER" "${SERVER_CMD[@]}")
	port_open && die "$HOST:$PORT is already taken before starting the $backend server"
	SERVER_LOG=$slog
	: >"$slog"
	"${SERVER_CMD[@]}" >"$slog" 2>&1 &
	SERVER_PID=$!
	deadline=$((SECONDS + START_TIMEOUT))
	while :; do
		if ! server_alive; then
			cat "$slog" >&2
			die "$backend server exited before listening on $HOST:$PORT (log above: $slog)"
		fi
		if { [[ $backend == c ]] || grep -q 'msg=listening' "$slog"; } && port_open; then
			break
		fi
		if ((SECONDS >= deadline)); then
			cat "$slog" >&2
			die "$backend server not listening on $HOST:$PORT after ${START_TIMEOUT}s (log: $slog)"
		fi
		sleep 0.05
	done
	if [[ -n $ENGINE ]]; then
		logged=$(grep -m1 'msg=listening' "$slog" | grep -o 'engine=[^ ]*' || true)
		if [[ ${logged#engine=} != "$ENGINE" ]]; then
			cat "$slog" >&2
			die "$backend server: asked for the $ENGINE engine, its listening line says '${logged:-no engine}' (log: $slog)"
		fi
	fi
}

# proc_stat_fields FILE: reads /proc/PID/stat into STAT_F without forking
# (the comm field may hold spaces, so split after the last ')'). STAT_F[0]
# is field 3 (state), so field N is STAT_F[N-3]. Fails if FILE is gone.
STAT_F=()
proc_stat_fields() {
	local line
	{ read -r line <"$1"; } 2>/dev/null || return 1
	read -r -a STAT_F <<<"${line##*) }"
}

# server_alive: the server still runs (a dead child stays a zombie until
# waited for, so kill -0 alone is not enough).
server_alive() {
	[[ -n $SERVER_PID ]] || return 1
	proc_stat_fields "/proc/$SERVER_PID/stat" || return 1
	[[ ${STAT_F[0]} != Z && ${STAT_F[0]} != X ]]
}

# server_ticks: sets SERVER_TICKS to utime+stime (fields 14 and 15, clock
# ticks) of the whole server process, all threads.
SERVER_TICKS=0
server_ticks() {
	server_alive || die "server (pid ${SERVER_PID:-?}) died"
	SERVER_TICKS=$((STAT_F[11] + STAT_F[12]))
}

# child_ticks: sets CHILD_TICKS to cutime+cstime (fields 16 and 17) of this
# shell: the CPU time of its waited-for children, which is how wrk's CPU
# time is read (run_wrk waits for it; nothing else is reaped meanwhile).
CHILD_TICKS=0
child_ticks() {
	proc_stat_fields "/proc/$$/stat" || die "cannot read /proc/$$/stat"
	CHILD_TICKS=$((STAT_F[13] + STAT_F[14]))
}

# cpu_idle N: sets IDLE_TICKS to idle+iowait+steal of CPU N (/proc/stat).
# With NO_HZ the idle and iowait counters are measured, not sampled by the
# tick, so "wall - idle" is a closer busy time than summing user, system,
# softirq ticks (those drift by tenths of a second over a 5s run).
IDLE_TICKS=0
cpu_idle() {
	local name idle iowait steal
	# cpuN user nice system idle iowait irq softirq steal guest guest_nice
	while read -r name _ _ _ idle iowait _ _ steal _; do
		if [[ $name == "cpu$1" ]]; then
			IDLE_TICKS=$((idle + iowait + steal))
			return 0
		fi
	done </proc/stat
	die "cpu$1 not found in /proc/stat"
}

# proc_snapshot NAME: NAME[pid] = utime+stime+cutime+cstime (ticks) of
# every user-space process but the server and this shell (whose children,
# wrk included, are ours). Builtins only: no process of ours shows up.
proc_snapshot() {
	# shellcheck disable=SC2034 # a nameref: the caller's array
	local -n snap=$1
	local p pid line
	local -a f
	snap=()
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[[ $pid == "$SERVER_PID" || $pid == "$$" ]] && continue
		{ read -r line <"$p/stat"; } 2>/dev/null || continue
		read -r -a f <<<"${line##*) }"
		((f[6] & 0x200000)) && continue # PF_KTHREAD
		# shellcheck disable=SC2004,SC2034 # $pid: an associative array; snap: a nameref
		snap[$pid]=$((f[11] + f[12] + f[13] + f[14]))
	done
}

# others_ticks BEFORE AFTER: sets OTHERS_TICKS to the CPU time other
# processes used between two snapshots. Processes that started meanwhile
# count in full; those that ended count through their parent's cutime once
# reaped (or not at all: this is an estimate, for spotting contention).
OTHERS_TICKS=0
others_ticks() {
	local -n before=$1 after=$2
	local pid t0 t1 d
	OTHERS_TICKS=0
	for pid in "${!after[@]}"; do
		t1=${after[$pid]}
		t0=${before[$pid]:-0}
		d=$((t1 - t0))
		((d >= 0)) || d=$t1 # pid reused
		OTHERS_TICKS=$((OTHERS_TICKS + d))
	done
}
# shellcheck disable=SC2034 # filled and read through namerefs
declare -A SNAP0=() SNAP1=()

# wait_quiet: waits until neither core is busier than QUIET_BUSY percent
# over half a second, for at most QUIET_TIMEOUT seconds and only while the
# noise budget lasts. Sets QUIET to yes (got there) or no, and QUIET_WAITED
# to the seconds it took (also added to NOISE_SPENT).
QUIET=no
QUIET_WAITED=0
NOISE_SPENT=0
wait_quiet() {
	local t_start=$SECONDS s0 l0 w0 w1
	while :; do
		w0=$EPOCHREALTIME
		cpu_idle "$CPU_SERVER" && s0=$IDLE_TICKS
		cpu_idle "$CPU_LOAD" && l0=$IDLE_TICKS
		sleep 0.5
		w1=$EPOCHREALTIME
		cpu_idle "$CPU_SERVER"
		s0=$((IDLE_TICKS - s0))
		cpu_idle "$CPU_LOAD"
		l0=$((IDLE_TICKS - l0))
		# busy percent = 100 * (1 - idle / elapsed)
		if awk -v w0="$w0" -v w1="$w1" -v s="$s0" -v l="$l0" -v hz="$CLK_TCK" -v max="$QUIET_BUSY" 'BEGIN {
			e = (w1 - w0) * hz
			exit !(100 * (1 - s / e) <= max && 100 * (1 - l / e) <= max) }'; then
			QUIET=yes
			break
		fi
		if ((SECONDS - t_start >= QUIET_TIMEOUT || NOISE_SPENT + SECONDS - t_start >= NOISE_BUDGET)); then
			QUIET=no
			break
		fi
	done
	QUIET_WAITED=$((SECONDS - t_start))
	NOISE_SPENT=$((NOISE_SPENT + QUIET_WAITED))
}

# ---------------------------------------------------------------- wrk

# run_wrk CONNS DURATION OUTFILE: wrk pinned to CPU_LOAD; fails if the
# server died, on wrk errors, socket errors and non-2xx/3xx responses. wrk
# is a waited-for child of this shell, so its CPU time lands in cutime.
run_wrk() {
	local conns=$1 dur=$2 out=$3
	local wrk_rc=0
	# In the background plus wait, so that Ctrl-C reaches the INT trap at
	# once: bash defers the trap of a foreground child that handles SIGINT
	# itself, as wrk does, and then carries on.
	taskset -c "$CPU_LOAD" wrk -t1 -c"$conns" -d"$dur" --latency "$URL" >"$out" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || wrk_rc=$?
	WRK_PID=""
	if ! server_alive; then
		tail -n 20 "$SERVER_LOG" >&2
		die "the server died during the wrk run ($conns connections; server log above: $SERVER_LOG, wrk output: $out)"
	fi
	if ((wrk_rc != 0)); then
		cat "$out" >&2
		die "wrk exited with status $wrk_rc (output: $out)"
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

go_version=$(go version "$SERVER_BIN" 2>/dev/null | awk '{print $2}' || true)
[[ -n $go_version ]] || go_version=$(go version 2>/dev/null | awk '{print $3}' || echo unknown)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git status --porcelain 2>/dev/null | wc -l)
invocation="BACKENDS=\"${BACKENDS[*]}\" CONNS=\"$CONNS\" DURATION=$DURATION WARMUP=$WARMUP RUNS=$RUNS CPU_SERVER=$CPU_SERVER CPU_LOAD=$CPU_LOAD PORT=$PORT REACTORS=$REACTORS"
invocation+=" QUIET_BUSY=$QUIET_BUSY QUIET_TIMEOUT=$QUIET_TIMEOUT CONTENDED_PCT=$CONTENDED_PCT RETRIES=$RETRIES NOISE_BUDGET=$NOISE_BUDGET"
invocation+=" ./scripts/bench-http.sh"

env_block() {
	echo "- kernel: $(uname -r)"
	echo "- CPU: ${cpu_model:-unknown}, $(nproc) online cores ($(nproc --all) total)"
	echo "- Go: $go_version ($BIN sha256 $BIN_SUM, run from a copy), wrk: $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')"
	echo "- tree: $git_rev, $git_dirty uncommitted paths at run time"
	echo "- command: \`$invocation\`"
	local b cmd
	for b in "${COLS[@]}"; do
		server_args "$b"
		cmd="taskset -c $CPU_SERVER ${SERVER_CMD[*]}"
		cmd=${cmd//$SERVER_BIN/$BIN}
		[[ -z $C_BIN ]] || cmd=${cmd//$C_BIN/uring_http}
		echo "- server $b: \`$cmd\`"
	done
	[[ -z $C_DESC ]] || echo "- C reference (c): $C_DESC"
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
log "$n_conns connection counts x ${#BACKENDS[@]} backends x $RUNS runs, ~$((n_conns * ${#BACKENDS[@]} * RUNS * per_run))s plus up to ${NOISE_BUDGET}s waiting out other load"

# ---------------------------------------------------------------- runs

printf 'conns\tbackend\trun\tattempt\tkept\tcontended\treq_s\tp50_ms\tp99_ms\tserver_cpu_s\treq_per_cpu_s\twall_s\tserver_core_busy_s\tserver_core_other_s\twrk_cpu_s\tload_core_busy_s\tload_core_other_s\tloadavg1\tquiet_before\tothers_cpu_s\n' >"$TSV"

# measure CONNS BACKEND RUN ATTEMPT: one measured run on a fresh server;
# sets LINE (a TSV row with KEPT where the kept column goes) and
# CONTENDED (yes/no).
measure() {
	local conns=$1 backend=$2 run=$3 attempt=$4 tag load1 t0 t1 c0 c1 w0 w1 \
		s_idle0 l_idle0 s_idle1 l_idle1 req_s total p50 p99
	tag="c$conns-$backend-$run.$attempt"
	wait_quiet
	[[ $QUIET == yes ]] || warn "$tag: CPU $CPU_SERVER or $CPU_LOAD busier than $QUIET_BUSY% with other work; running anyway"
	start_server "$backend" "$RAW/$tag.server.log"
	run_wrk "$conns" "$WARMUP" "$RAW/$tag.warmup.txt"

	load1=$(cut -d' ' -f1 /proc/loadavg)
	proc_snapshot SNAP0
	# Samples as close to wrk's start and end as the shell allows (builtins
	# only, no forks in between).
	cpu_idle "$CPU_SERVER" && s_idle0=$IDLE_TICKS
	cpu_idle "$CPU_LOAD" && l_idle0=$IDLE_TICKS
	server_ticks && t0=$SERVER_TICKS
	child_ticks && c0=$CHILD_TICKS
	w0=$EPOCHREALTIME
	run_wrk "$conns" "$DURATION" "$RAW/$tag.wrk.txt"
	w1=$EPOCHREALTIME
	server_ticks && t1=$SERVER_TICKS
	child_ticks && c1=$CHILD_TICKS
	cpu_idle "$CPU_SERVER" && s_idle1=$IDLE_TICKS
	cpu_idle "$CPU_LOAD" && l_idle1=$IDLE_TICKS
	proc_snapshot SNAP1
	others_ticks SNAP0 SNAP1
	stop_server

	req_s=$(wrk_field "$RAW/$tag.wrk.txt" req_s)
	total=$(wrk_field "$RAW/$tag.wrk.txt" total)
	p50=$(wrk_field "$RAW/$tag.wrk.txt" p50_ms)
	p99=$(wrk_field "$RAW/$tag.wrk.txt" p99_ms)
	LINE=$(awk -v c="$conns" -v b="$backend" -v r="$run" -v a="$attempt" -v rq="$req_s" -v n="$total" \
		-v p50="$p50" -v p99="$p99" -v dt=$((t1 - t0)) -v dw=$((c1 - c0)) -v hz="$CLK_TCK" \
		-v w0="$w0" -v w1="$w1" -v si=$((s_idle1 - s_idle0)) -v li=$((l_idle1 - l_idle0)) \
		-v la="$load1" -v q="$QUIET" -v lim="$CONTENDED_PCT" -v ot="$OTHERS_TICKS" 'BEGIN {
		cpu = dt / hz; wrk = dw / hz; wall = w1 - w0; others = ot / hz
		# all n requests of the measured run fall inside the CPU sample
		rpc = (cpu > 0) ? n / cpu : "nan"
		sbusy = wall - si / hz; lbusy = wall - li / hz
		# busy time on each core not charged to the process pinned there:
		# other processes, interrupts, idle entry and exit, accounting slack
		so = sbusy - cpu; lo = lbusy - wrk
		# Both cores are ours: any other process took time from one of them.
		# (The unaccounted busy time above is no test: a server that sleeps
		# and wakes a lot leaves more of it, with no one else around.)
		cont = (others > lim / 100 * wall) ? "yes" : "no"
		printf "%d\t%s\t%d\t%d\tKEPT\t%s\t%.2f\t%.3f\t%.3f\t%.2f\t%.0f\t%.3f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%.2f\n",
			c, b, r, a, cont, rq, p50, p99, cpu, rpc, wall, sbusy, so, wrk, lbusy, lo, la, q, others
	}')
	local -a v
	IFS=$'\t' read -r -a v <<<"$LINE"
	CONTENDED=${v[C_CONT - 1]}
	log "$(printf 'c=%-4s %-5s run %d: %8.0f req/s  p50 %7.3fms  p99 %7.3fms  server %5.2f CPU-s  %6.0f req/CPU-s  others %.2f CPU-s' \
		"$conns" "$backend" "$run" "${v[C_REQ - 1]}" "${v[C_P50 - 1]}" "${v[C_P99 - 1]}" "${v[C_CPU - 1]}" "${v[C_RPC - 1]}" \
		"${v[C_OTHERS - 1]}")"
	if [[ $CONTENDED == yes ]]; then
		warn "$tag: other processes used ${v[C_OTHERS - 1]} CPU-s during the run (limit $CONTENDED_PCT% of ${v[C_WALL - 1]}s)"
	fi
}

for conns in $CONNS; do
	for ((run = 1; run <= RUNS; run++)); do
		for backend in "${BACKENDS[@]}"; do
			attempt=1
			while :; do
				t_start=$SECONDS
				measure "$conns" "$backend" "$run" "$attempt"
				if [[ $CONTENDED == yes ]] && ((attempt <= RETRIES && NOISE_SPENT < NOISE_BUDGET)); then
					# Other jobs took time from the server's or wrk's core: this
					# run measures them too. Keep it in the TSV, not in the
					# summary, and redo it.
					NOISE_SPENT=$((NOISE_SPENT + SECONDS - t_start - QUIET_WAITED))
					warn "c$conns-$backend-$run: contended; repeating it (noise budget used: ${NOISE_SPENT}s of ${NOISE_BUDGET}s)"
					printf '%s\n' "${LINE/$'\tKEPT\t'/$'\tno\t'}" >>"$TSV"
					attempt=$((attempt + 1))
					continue
				fi
				[[ $CONTENDED == yes ]] && warn "c$conns-$backend-$run: contended run kept (retries or noise budget exhausted)"
				printf '%s\n' "${LINE/$'\tKEPT\t'/$'\tyes\t'}" >>"$TSV"
				break
			done
		done
	done
done

# ---------------------------------------------------------------- report

{
	echo "## HTTP fixed response (wrk), $STAMP"
	echo
	env_block
	echo "- raw per-run numbers: \`$TSV\`"
	echo
	tables
} >"$SUMMARY"

echo
cat "$SUMMARY"
echo
log "raw per-run results: $TSV"
log "summary: $SUMMARY; wrk outputs and server logs: $RAW"

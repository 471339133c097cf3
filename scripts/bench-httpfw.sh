#!/usr/bin/env bash
# bench-httpfw.sh: the HTTP-framework workload of issue 11. GET / -> 200
# "Hello, World!" (text/plain) under wrk (one thread, pinned to the load
# core), each server pinned to the server core; requests per server
# CPU-second at each connection count, then RSS per idle keep-alive
# connection after one request (bin idle-http, IDLE_CONNS connections).
#
#   ./scripts/bench-httpfw.sh                          # everything, ~6 min
#   RUNS=1 DURATION=2s CONNS=64 IDLE_CONNS=0 ./scripts/bench-httpfw.sh   # smoke
#   SERVERS="native fasthttp net" ./scripts/bench-httpfw.sh
#   TLS=1 SERVERS="gyrenet net" IDLE_CONNS=0 ./scripts/bench-httpfw.sh   # HTTPS
#
# Servers (SERVERS, in run order; net is required: every ratio is to it):
#   native   gyre-http -api native  (cmd/gyre-http: handlers inline on the reactor)
#   nethttp  gyre-http -api nethttp (a net/http ServeMux on gyre's goroutine pool)
#   gyrenet  gyre-http -api gyrenet (net/http's http.Server over a gyrenet listener)
#   net      nethttp-hello  (bench/cmd/nethttp-hello: a plain net/http server)
#   fasthttp fasthttp-hello (bench/cmd/fasthttp-hello: valyala/fasthttp, defaults)
#   nbhttp   nbhttp-hello   (bench/cmd/nbhttp-hello: lesismal/nbio's nbhttp,
#            one listener, one event loop, a net/http Handler)
# gyre-http runs on ENGINE with REACTORS reactors and must log that engine
# on its "listening" line. Every server runs with the GOMAXPROCS Go picks
# under taskset -c CPU_SERVER (one): gyre's default raises it to REACTORS
# (1), the peers keep Go's default, so all run with GOMAXPROCS=1.
# The script builds every server (go build, into the run's raw directory,
# so a concurrent build cannot swap a binary mid-run): gyre-http from this
# module, the rest and idle-http from the bench module.
#
# For every connection count, the servers run alternately (native,
# nethttp, net, fasthttp, nbhttp, native, ...), each run on a freshly
# started server: warm-up wrk run, then the measured wrk run. The server's
# CPU time (utime+stime of the whole process, /proc/PID/stat fields 14 and
# 15) is sampled right before and right after the measured run, which gives
# requests per server CPU-second. Then, unless IDLE_CONNS is 0, each server
# runs once more, fresh, for idle-http: 200 warm-up connections with one
# request each, then IDLE_CONNS connections (RSS read once connected), one
# GET / HTTP/1.1 keep-alive request each, a settle time, RSS again; it
# checks that every connection is still open, and reports the RSS growth
# per connection (VmRSS of /proc/PID/status).
#
# Environment (defaults in brackets):
#   SERVERS     servers, in run order (see above)        ["native nethttp net fasthttp nbhttp"]
#   CONNS       connection counts                        ["64 512"]
#   DURATION    measured wrk run per server and count    [5s]
#   WARMUP      warm-up wrk run before each measured run [1s]
#   RUNS        measured runs per server and count       [3]
#   IDLE_CONNS  idle keep-alive connections for the memory test; 0 skips it [10000]
#   TLS         1: HTTPS (a self-signed certificate, TLS 1.3) for every
#               server; only gyrenet and net serve it, and IDLE_CONNS must
#               be 0                                   [0]
#   IDLE_SETTLE idle-http -settle                        [2s]
#   ENGINE      gyre-http -engine                        [io_uring]
#   REACTORS    gyre-http -reactors                      [1]
#   CPU_SERVER  core the server is pinned to             [0]
#   CPU_LOAD    core wrk and idle-http are pinned to     [1]
#   PORT        127.0.0.1 port for the server            [7490]
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
# Output: a markdown table per connection count, the issue-11 target ratios
# and the idle table on stdout (also written to
# RESULTS_DIR/httpfw-<timestamp>.md), raw per-run numbers in
# RESULTS_DIR/httpfw-<timestamp>.tsv and httpfw-<timestamp>-idle.tsv, wrk
# and idle-http outputs and server logs in RESULTS_DIR/tmp/httpfw-<timestamp>/
# (git-ignored).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNS=${CONNS:-"64 512"}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
RUNS=${RUNS:-3}
CPU_SERVER=${CPU_SERVER:-0}
CPU_LOAD=${CPU_LOAD:-1}
PORT=${PORT:-7490}
REACTORS=${REACTORS:-1}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
START_TIMEOUT=${START_TIMEOUT:-10}
QUIET_BUSY=${QUIET_BUSY:-10}
QUIET_TIMEOUT=${QUIET_TIMEOUT:-15}
CONTENDED_PCT=${CONTENDED_PCT:-10}
RETRIES=${RETRIES:-2}
NOISE_BUDGET=${NOISE_BUDGET:-90}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_SETTLE=${IDLE_SETTLE:-2s}
ENGINE=${ENGINE:-io_uring}
HOST=127.0.0.1
TLS=${TLS:-0}
URL="http://$HOST:$PORT/"
if [[ $TLS == 1 ]]; then URL="https://$HOST:$PORT/"; fi
# BACKENDS is the script's name for SERVERS (shared code with bench-http.sh).
read -r -a BACKENDS <<<"${SERVERS:-native nethttp net fasthttp nbhttp}"

die() {
	echo "bench-httpfw: FAIL: $*" >&2
	exit 1
}
warn() { echo "bench-httpfw: warning: $*" >&2; }
log() { echo "bench-httpfw: $*" >&2; }

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
		echo "Median (min–max) of $runs runs per server; ${ratios[0]} is the ratio of the medians, and"
		echo "\"per run pair\" the median (min–max) of the ratios of the ${others[0]} and net runs that ran"
	else
		local list
		list=$(printf '%s, ' "${ratios[@]:0:${#ratios[@]}-1}")
		list="${list%, } and ${ratios[-1]}"
		echo "Median (min–max) of $runs runs per server; $list are the ratios of the medians to net's, and"
		echo "\"per run pair\" the median (min–max) of the ratios of each server's runs and the net runs that ran"
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
	targets
}

# median_of CONNS SERVER: the median requests / server CPU-s ("nan" if none).
median_of() { stats "$1" "$2" "$C_RPC" | cut -d' ' -f1; }

# targets: issue 11's ratios of medians of requests / server CPU-s, for
# the pairs this run has: native/fasthttp (target >= 1.2x), nethttp/net
# (>= 1.0x at 64 connections, >= 1.2x at 512) and nethttp/nbhttp (>= 1.3x).
targets() {
	local pairs=() p a b conns line
	for p in native/fasthttp nethttp/net nethttp/nbhttp; do
		a=${p%/*} b=${p#*/}
		[[ " ${COLS[*]} " == *" $a "* && " ${COLS[*]} " == *" $b "* ]] && pairs+=("$p")
	done
	((${#pairs[@]} > 0)) || return 0
	echo
	echo "### Issue 11 targets: ratios of the medians of requests / server CPU-s"
	echo
	line="| connections |"
	for p in "${pairs[@]}"; do
		case $p in
		native/fasthttp) line+=" native/fasthttp (target ≥1.2x) |" ;;
		nethttp/net) line+=" nethttp/net (target ≥1.0x at 64, ≥1.2x at 512) |" ;;
		nethttp/nbhttp) line+=" nethttp/nbhttp (target ≥1.3x) |" ;;
		esac
	done
	echo "$line"
	echo "|---|$(printf -- '---:|%.0s' "${pairs[@]}")"
	while read -r conns; do
		line="| $conns |"
		for p in "${pairs[@]}"; do
			line+=" $(awk -v x="$(median_of "$conns" "${p%/*}")" -v y="$(median_of "$conns" "${p#*/}")" 'BEGIN {
				if (x == "nan" || y == "nan" || y <= 0) print "n/a"; else printf "%.2fx", x / y }') |"
		done
		echo "$line"
	done < <(awk -F'\t' 'NR > 1 && !seen[$1]++ { print $1 }' "$TSV")
}

# idle_table: the idle keep-alive memory table from IDLE_TSV, if any.
idle_table() {
	[[ -s ${IDLE_TSV:-} ]] && (($(wc -l <"$IDLE_TSV") > 1)) || return 0
	echo
	echo "### Idle keep-alive connections"
	echo
	echo "RSS growth of the server per connection (VmRSS), after one GET / HTTP/1.1 keep-alive"
	echo "request on each and a settle time, all connections still open (target for gyre: ≤1 KiB)."
	echo
	echo "| server | connections | per connection after one request | once connected, before it | server RSS at start |"
	echo "|---|---:|---:|---:|---:|"
	awk -F'\t' 'NR > 1 {
		if ($3 == "failed") { printf "| %s | %s | failed (see the idle-http log) | | |\n", $1, $2; next }
		printf "| %s | %d | %d B (%.2f KiB) | %d B | %.1f MiB |\n", $1, $2, $5, $5 / 1024, $4, $3 / 1024 }' "$IDLE_TSV"
}

# SUMMARIZE=FILE.tsv: only print the tables of an earlier run's TSV.
if [[ -n ${SUMMARIZE:-} ]]; then
	[[ -r $SUMMARIZE ]] || die "SUMMARIZE: cannot read '$SUMMARIZE'"
	head -n 1 "$SUMMARIZE" | grep -q $'^conns\tserver\trun\tattempt\tkept' || die "SUMMARIZE: $SUMMARIZE is not a bench-httpfw TSV"
	TSV=$SUMMARIZE
	IDLE_TSV=${SUMMARIZE%.tsv}-idle.tsv
	mapfile -t tsv_backends < <(awk -F'\t' 'NR > 1 && !seen[$2]++ { print $2 }' "$TSV")
	set_cols "${tsv_backends[@]}"
	tables
	idle_table
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
[[ $IDLE_CONNS =~ ^[0-9]+$ ]] || die "IDLE_CONNS must be a whole number, not '$IDLE_CONNS'"
[[ $IDLE_SETTLE =~ ^[0-9]+(ms|s)$ ]] || die "IDLE_SETTLE must look like 2s or 500ms, not '$IDLE_SETTLE'"
case $ENGINE in
io_uring | epoll | net) ;;
*) die "ENGINE must be io_uring, epoll or net, not '$ENGINE'" ;;
esac
((${#BACKENDS[@]} > 0)) || die "SERVERS is empty"
declare -A seen_backend=()
for b in "${BACKENDS[@]}"; do
	case $b in
	native | nethttp | gyrenet | net | fasthttp | nbhttp) ;;
	*) die "SERVERS: unknown server '$b' (want native, nethttp, gyrenet, net, fasthttp, nbhttp)" ;;
	esac
	[[ $TLS != 1 || $b == gyrenet || $b == net ]] || die "TLS=1: only gyrenet and net serve HTTPS, not '$b'"
	[[ -z ${seen_backend[$b]:-} ]] || die "SERVERS names $b twice"
	seen_backend[$b]=1
done
[[ -n ${seen_backend[net]:-} ]] || die "SERVERS must include net: every ratio is to it"
[[ $TLS == 0 || $TLS == 1 ]] || die "TLS must be 0 or 1, not '$TLS'"
[[ $TLS == 0 || $IDLE_CONNS == 0 ]] || die "TLS=1 needs IDLE_CONNS=0 (idle-http speaks plain HTTP)"
set_cols "${BACKENDS[@]}"
[[ $START_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "START_TIMEOUT must be whole seconds"
for var in QUIET_BUSY QUIET_TIMEOUT CONTENDED_PCT RETRIES NOISE_BUDGET; do
	[[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a whole number, not '${!var}'"
done
[[ $CPU_SERVER =~ ^[0-9]+$ && $CPU_LOAD =~ ^[0-9]+$ ]] || die "CPU_SERVER and CPU_LOAD must be single CPU numbers"
[[ $CPU_SERVER != "$CPU_LOAD" ]] || die "CPU_SERVER and CPU_LOAD must differ (both are $CPU_SERVER)"

for tool in go taskset getconf awk sort sha256sum; do
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

CLK_TCK=$(getconf CLK_TCK)
[[ $CLK_TCK =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK gave '$CLK_TCK'"

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }
port_open && die "something already listens on $HOST:$PORT; set PORT to a free port"

# ---------------------------------------------------------------- files

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS_DIR"
TSV="$RESULTS_DIR/httpfw-$STAMP.tsv"
IDLE_TSV="$RESULTS_DIR/httpfw-$STAMP-idle.tsv"
SUMMARY="$RESULTS_DIR/httpfw-$STAMP.md"
RAW="$RESULTS_DIR/tmp/httpfw-$STAMP"
mkdir -p "$RAW"

# Build private copies of every binary: a concurrent build must not swap
# a server between runs.
log "building gyre-http, nethttp-hello, fasthttp-hello, nbhttp-hello, idle-http into $RAW"
go build -o "$RAW/" ./cmd/gyre-http >&2 || die "go build ./cmd/gyre-http failed"
(cd bench && go build -o "../$RAW/" ./cmd/nethttp-hello ./cmd/fasthttp-hello ./cmd/nbhttp-hello ./cmd/idle-http) >&2 ||
	die "go build of the bench servers failed"
BIN_SUMS=""
for f in gyre-http nethttp-hello fasthttp-hello nbhttp-hello idle-http; do
	BIN_SUMS+="$f $(sha256sum "$RAW/$f" | cut -c1-12), "
done
BIN_SUMS=${BIN_SUMS%, }
# the peers' versions, as the bench module pins them
peer_versions=$(cd bench && go list -m -f '{{.Path}} {{.Version}}' github.com/valyala/fasthttp github.com/lesismal/nbio 2>/dev/null | paste -sd, - | sed 's/,/, /g' || echo unknown)

# 10,000 connections need as many descriptors in the server and in
# idle-http (Go raises its soft limit to the hard one itself; this also
# covers anything else).
if ((IDLE_CONNS > 0)); then
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	nofile=$(ulimit -n)
	[[ $nofile == unlimited ]] || ((nofile > IDLE_CONNS + 300)) ||
		die "open-file limit $nofile is too low for IDLE_CONNS=$IDLE_CONNS (raise ulimit -Hn or lower IDLE_CONNS)"
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
	if [[ -n ${RAW:-} ]]; then
		rm -f "$RAW/gyre-http" "$RAW/nethttp-hello" "$RAW/fasthttp-hello" "$RAW/nbhttp-hello" "$RAW/idle-http"
	fi
	if ((rc != 0)); then
		echo "bench-httpfw: exit status $rc; partial results: $TSV, raw outputs: $RAW" >&2
	fi
}
trap cleanup EXIT
trap 'echo "bench-httpfw: interrupted" >&2; exit 130' INT
trap 'echo "bench-httpfw: terminated" >&2; exit 143' TERM

SERVER_CMD=()
SERVER_LOG=/dev/null

# server_args SERVER: sets SERVER_CMD (unpinned) and WANT_ENGINE, the
# engine gyre-http must name on its listening line ("" for the peers).
WANT_ENGINE=""
server_args() {
	WANT_ENGINE=""
	case $1 in
	native | nethttp | gyrenet)
		WANT_ENGINE=$ENGINE
		SERVER_CMD=("$RAW/gyre-http" -addr "$HOST:$PORT" -api "$1" -engine "$ENGINE" -reactors "$REACTORS" -grace 1s)
		if [[ $TLS == 1 ]]; then SERVER_CMD+=(-tls); fi
		;;
	net)
		SERVER_CMD=("$RAW/nethttp-hello" -addr "$HOST:$PORT")
		if [[ $TLS == 1 ]]; then SERVER_CMD+=(-tls); fi
		;;
	fasthttp) SERVER_CMD=("$RAW/fasthttp-hello" -addr "$HOST:$PORT") ;;
	nbhttp) SERVER_CMD=("$RAW/nbhttp-hello" -addr "$HOST:$PORT" -pollers 1) ;;
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
		if grep -q 'msg=listening' "$slog" && port_open; then
			break
		fi
		if ((SECONDS >= deadline)); then
			cat "$slog" >&2
			die "$backend server not listening on $HOST:$PORT after ${START_TIMEOUT}s (log: $slog)"
		fi
		sleep 0.05
	done
	if [[ -n $WANT_ENGINE ]]; then
		logged=$(grep -m1 'msg=listening' "$slog" | grep -o 'engine=[^ ]*' || true)
		if [[ ${logged#engine=} != "$WANT_ENGINE" ]]; then
			cat "$slog" >&2
			die "$backend server: asked for the $WANT_ENGINE engine, its listening line says '${logged:-no engine}' (log: $slog)"
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

go_version=$(go version "$RAW/gyre-http" 2>/dev/null | awk '{print $2}' || true)
[[ -n $go_version ]] || go_version=$(go version 2>/dev/null | awk '{print $3}' || echo unknown)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git status --porcelain 2>/dev/null | wc -l)
invocation="SERVERS=\"${BACKENDS[*]}\" CONNS=\"$CONNS\" DURATION=$DURATION WARMUP=$WARMUP RUNS=$RUNS IDLE_CONNS=$IDLE_CONNS IDLE_SETTLE=$IDLE_SETTLE TLS=$TLS"
invocation+=" ENGINE=$ENGINE REACTORS=$REACTORS CPU_SERVER=$CPU_SERVER CPU_LOAD=$CPU_LOAD PORT=$PORT"
invocation+=" QUIET_BUSY=$QUIET_BUSY QUIET_TIMEOUT=$QUIET_TIMEOUT CONTENDED_PCT=$CONTENDED_PCT RETRIES=$RETRIES NOISE_BUDGET=$NOISE_BUDGET"
invocation+=" ./scripts/bench-httpfw.sh"

env_block() {
	echo "- kernel: $(uname -r)"
	echo "- CPU: ${cpu_model:-unknown}, $(nproc) online cores ($(nproc --all) total)"
	echo "- Go: $go_version, wrk: $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), peers: $peer_versions"
	echo "- binaries (built by the script, sha256): $BIN_SUMS"
	echo "- tree: $git_rev, $git_dirty uncommitted paths at run time"
	echo "- command: \`$invocation\`"
	local b cmd
	for b in "${COLS[@]}"; do
		server_args "$b"
		cmd="taskset -c $CPU_SERVER ${SERVER_CMD[*]}"
		cmd=${cmd//$RAW\//}
		echo "- server $b: \`$cmd\`"
	done
	echo "- load: \`taskset -c $CPU_LOAD wrk -t1 -cN -d$DURATION --latency $URL\`, after a $WARMUP warm-up with the same N"
	((IDLE_CONNS == 0)) ||
		echo "- idle: \`taskset -c $CPU_LOAD idle-http -addr $HOST:$PORT -pid SERVER_PID -conns $IDLE_CONNS -settle $IDLE_SETTLE\` on a fresh server"
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
echo "# bench-httpfw environment"
echo
env_block
echo
log "$n_conns connection counts x ${#BACKENDS[@]} servers x $RUNS runs, ~$((n_conns * ${#BACKENDS[@]} * RUNS * per_run))s, then the idle test ($IDLE_CONNS connections) on each, plus up to ${NOISE_BUDGET}s waiting out other load"

# ---------------------------------------------------------------- runs

printf 'conns\tserver\trun\tattempt\tkept\tcontended\treq_s\tp50_ms\tp99_ms\tserver_cpu_s\treq_per_cpu_s\twall_s\tserver_core_busy_s\tserver_core_other_s\twrk_cpu_s\tload_core_busy_s\tload_core_other_s\tloadavg1\tquiet_before\tothers_cpu_s\n' >"$TSV"

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

# ---------------------------------------------------------------- idle

# idle SERVER: idle-http on a fresh server; appends a row to IDLE_TSV.
idle() {
	local server=$1 out="$RAW/idle-$1.txt" vals
	wait_quiet
	[[ $QUIET == yes ]] || warn "idle-$server: CPU $CPU_SERVER or $CPU_LOAD busier than $QUIET_BUSY% with other work; running anyway"
	start_server "$server" "$RAW/idle-$server.server.log"
	if taskset -c "$CPU_LOAD" "$RAW/idle-http" -addr "$HOST:$PORT" -pid "$SERVER_PID" -conns "$IDLE_CONNS" \
		-settle "$IDLE_SETTLE" >"$out" 2>&1; then
		vals=$(awk '$1 == "idle-http:" {
			for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			printf "%s\t%s\t%s", v["rss_start_kib"], v["connected_b_per_conn"], v["after_request_b_per_conn"] }' "$out")
		[[ -n $vals ]] || die "idle-$server: no result line in $out"
		printf '%s\t%s\t%s\n' "$server" "$IDLE_CONNS" "$vals" >>"$IDLE_TSV"
		log "idle $server: $(head -n 1 "$out")"
	else
		cat "$out" >&2
		warn "idle-$server: idle-http failed (output above: $out)"
		printf '%s\t%s\tfailed\t\t\n' "$server" "$IDLE_CONNS" >>"$IDLE_TSV"
	fi
	server_alive || warn "idle-$server: the server died (log: $RAW/idle-$server.server.log)"
	stop_server
}

if ((IDLE_CONNS > 0)); then
	printf 'server\tconns\trss_start_kib\tconnected_b_per_conn\tafter_request_b_per_conn\n' >"$IDLE_TSV"
	for server in "${BACKENDS[@]}"; do
		idle "$server"
	done
fi

# ---------------------------------------------------------------- report

{
	echo "## HTTP-framework workload: GET / -> Hello, World! (wrk), $STAMP"
	echo
	env_block
	echo "- raw per-run numbers: \`$TSV\`"
	((IDLE_CONNS == 0)) || echo "- idle numbers: \`$IDLE_TSV\`"
	echo
	tables
	idle_table
} >"$SUMMARY"

echo
cat "$SUMMARY"
echo
log "raw per-run results: $TSV$( ((IDLE_CONNS == 0)) || echo ", $IDLE_TSV")"
log "summary: $SUMMARY; wrk outputs and server logs: $RAW"

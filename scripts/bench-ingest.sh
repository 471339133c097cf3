#!/usr/bin/env bash
# bench-ingest.sh: the ingest node on gyre's reactors (bin/ingestd) against
# the net-package baseline (bench's ingest-net: goroutine per connection, the
# same dispatcher and sinks) and, with the discard sink, the C liburing
# reference (uring_ingest: one thread, multishot recv into a buffer ring, one
# cumulative ACK per receive, no sink; built from C_SRC when it is there),
# all driven by bin/ingest-load, server pinned to one CPU and the load
# generator to the other.
#
#   make bench-ingest                         # builds, then runs this script
#   CONNS=64 SIZES=64 MODES=ack SINKS=discard RUNS=3 ./scripts/bench-ingest.sh
#
# For every (connections, payload size, client mode, sink) the servers run
# alternately, RUNS times each, each on a fresh process: a warm-up load, then
# the measured load. The server's CPU time (utime+stime, /proc/PID/stat) is
# sampled around the measured load, which gives messages per server
# CPU-second. Client modes: "pipelined" (256 unacked messages per
# connection) and "ack" (each client waits for every ACK: window 1).
#
# Environment (defaults in brackets):
#   CONNS       connection counts                 ["64 1000"]
#   SIZES       payload sizes in bytes            ["64 1024"]
#   MODES       client modes                      ["pipelined ack"]
#   SINKS       sinks                             ["discard file"]
#   RUNS        measured runs per server          [3]
#   DURATION    measured load per run             [4s]
#   WARMUP      warm-up load per run              [1s]
#   CPU_SERVER / CPU_LOAD   cores                 [0 / 1]
#   PORT        127.0.0.1 port                    [7490]
#   REACTORS    ingestd --reactors                [1]
#   ENGINE      ingestd --engine                  [io_uring]
#   C_SRC       the C reference's source; without it the c column is left
#               out                      [../shared/reference/uring_ingest.c]
#   SESSION_CONNS  connection counts whose rows also run ingestd with every
#               load stream in a producer session (ingest-load --session),
#               to show what sessions cost; "" for none      ["64"]
#   MAX_SPREAD  fail when a server's (max-min)/median of msgs per CPU-s
#               exceeds this percentage (too noisy to trust)  [25]
#   RESULTS_DIR                                   [bench/results]
# Output: a markdown table on stdout (and RESULTS_DIR/ingest-<stamp>.md), the
# raw per-run numbers in RESULTS_DIR/ingest-<stamp>.tsv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNS=${CONNS:-"64 1000"}
SIZES=${SIZES:-"64 1024"}
MODES=${MODES:-"pipelined ack"}
SINKS=${SINKS:-"discard file"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-4s}
WARMUP=${WARMUP:-1s}
CPU_SERVER=${CPU_SERVER:-0}
CPU_LOAD=${CPU_LOAD:-1}
PORT=${PORT:-7490}
REACTORS=${REACTORS:-1}
ENGINE=${ENGINE:-io_uring}
MAX_SPREAD=${MAX_SPREAD:-25}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
C_SRC=${C_SRC:-../shared/reference/uring_ingest.c}
SESSION_CONNS=${SESSION_CONNS-64}
HOST=127.0.0.1

die() { echo "bench-ingest: FAIL: $*" >&2; exit 1; }
log() { echo "bench-ingest: $*" >&2; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ $CPU_SERVER != "$CPU_LOAD" ]] || die "CPU_SERVER and CPU_LOAD must differ"
for b in bin/ingestd bin/ingest-load bin/ingest-net; do
	[[ -x $b ]] || die "$b not found: run 'make bench-ingest' (it builds them)"
done
for m in $MODES; do [[ $m == pipelined || $m == ack ]] || die "MODES: pipelined or ack, not '$m'"; done
for s in $SINKS; do [[ $s == discard || $s == file ]] || die "SINKS: discard or file, not '$s'"; done

# jq parses ingest-load's --json report; install it when missing.
if ! command -v jq >/dev/null; then
	log "jq not found, installing it with apt-get"
	SUDO=(); [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" apt-get install -y jq >/dev/null 2>&1 || { "${SUDO[@]}" apt-get update >/dev/null && "${SUDO[@]}" apt-get install -y jq >/dev/null; } || die "cannot install jq"
fi
# The C reference, when its source is there: gcc and liburing-dev are
# installed if missing, and it is built into the results directory.
C_BIN=
if [[ -f $C_SRC ]]; then
	SUDO=(); [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	apt_get() { "${SUDO[@]}" apt-get install -y "$@" >/dev/null 2>&1 || { "${SUDO[@]}" apt-get update >/dev/null && "${SUDO[@]}" apt-get install -y "$@" >/dev/null; }; }
	command -v gcc >/dev/null || { log "gcc not found (C reference), installing it with apt-get"; apt_get gcc || die "cannot install gcc"; }
	echo '#include <liburing.h>' | gcc -x c -E - >/dev/null 2>&1 || { log "liburing.h not found (C reference), installing liburing-dev"; apt_get liburing-dev || die "cannot install liburing-dev"; }
	mkdir -p "$RESULTS_DIR/tmp"
	C_BIN="$RESULTS_DIR/tmp/uring_ingest"
	gcc -O2 -o "$C_BIN" "$C_SRC" -luring || die "building the C reference $C_SRC failed"
else
	log "no C reference at $C_SRC: the c column is left out"
fi

CLK_TCK=$(getconf CLK_TCK)
port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }
port_open && die "something already listens on $HOST:$PORT; set PORT"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS_DIR/tmp/ingest-$STAMP"
RAW="$RESULTS_DIR/tmp/ingest-$STAMP"
TSV="$RESULTS_DIR/ingest-$STAMP.tsv"
MD="$RESULTS_DIR/ingest-$STAMP.md"
printf 'conns\tsize\tmode\tsink\tserver\trun\tmsgs_per_s\tcpu_s\tmsgs_per_cpu_s\tp50_us\tp99_us\tp999_us\tacked\terrors\n' >"$TSV"

SERVER_PID=
cleanup() {
	if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_server() { # server sink
	local server=$1 sink=$2 dir="$RAW/data-$1"
	rm -rf "$dir"
	case $server in
	uring | session) taskset -c "$CPU_SERVER" bin/ingestd --tcp "$HOST:$PORT" --metrics '' --reactors "$REACTORS" --engine "$ENGINE" \
		--sink "$sink" --data-dir "$dir" --log-level warn >"$RAW/server.log" 2>&1 &
		;;
	net) taskset -c "$CPU_SERVER" bin/ingest-net --tcp "$HOST:$PORT" --sink "$sink" --data-dir "$dir" \
		--shards "$REACTORS" >"$RAW/server.log" 2>&1 &
		;;
	c) taskset -c "$CPU_SERVER" "$C_BIN" "$PORT" >"$RAW/server.log" 2>&1 &
		;;
	esac
	SERVER_PID=$!
	for _ in $(seq 100); do
		port_open && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || die "$server server exited at start: $(tail -3 "$RAW/server.log")"
		sleep 0.1
	done
	die "$server server did not listen on $HOST:$PORT within 10s"
}

stop_server() {
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
	for _ in $(seq 50); do port_open || return 0; sleep 0.1; done
}

load() { # conns size window duration json-out [flags...]
	local conns=$1 size=$2 window=$3 duration=$4 out=$5
	shift 5
	taskset -c "$CPU_LOAD" bin/ingest-load --addr "$HOST:$PORT" --conns "$conns" --size "$size" --window "$window" \
		--duration "$duration" --json --progress=false "$@" >"$out" 2>"$out.err" || {
		echo "load failed: $(tail -3 "$out.err")" >&2
		return 1
	}
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print 0} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
spread() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; if (m<=0) print 0; else printf "%.1f", (a[NR]-a[1])*100/m}'; }

log "results: $TSV"
for conns in $CONNS; do for size in $SIZES; do for mode in $MODES; do for sink in $SINKS; do
	window=256; [[ $mode == ack ]] && window=1
	servers="uring net"
	[[ -n $C_BIN && $sink == discard ]] && servers="$servers c"
	[[ " $SESSION_CONNS " == *" $conns "* ]] && servers="$servers session"
	for run in $(seq "$RUNS"); do
		for server in $servers; do
			flags=()
			[[ $server == session ]] && flags=(--session)
			start_server "$server" "$sink"
			load "$conns" "$size" "$window" "$WARMUP" "$RAW/warm.json" "${flags[@]}" || die "warm-up load against $server failed"
			t0=$(cpu_ticks "$SERVER_PID")
			load "$conns" "$size" "$window" "$DURATION" "$RAW/run.json" "${flags[@]}" || die "load against $server failed ($conns conns, $size B, $mode, $sink)"
			t1=$(cpu_ticks "$SERVER_PID")
			kill -0 "$SERVER_PID" 2>/dev/null || die "$server server died during the run"
			stop_server
			read -r mps acked errs unans p50 p99 p999 < <(jq -r '[.messages_per_second, .messages_acked, .errors, .unanswered, .latency_us.p50, .latency_us.p99, .latency_us.p999] | @tsv' "$RAW/run.json")
			[[ $errs == 0 && $unans == 0 ]] || die "$server: ingest-load saw $errs errors and $unans unanswered messages ($conns conns, $size B, $mode, $sink)"
			cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", d/hz}')
			measured=$(jq -r '.measured_messages' "$RAW/run.json")
			per_cpu=$(awk -v m="$measured" -v c="$cpu" 'BEGIN {if (c > 0) printf "%.0f", m/c; else print 0}')
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$conns" "$size" "$mode" "$sink" "$server" "$run" \
				"$mps" "$cpu" "$per_cpu" "$p50" "$p99" "$p999" "$acked" "$errs" >>"$TSV"
			log "$conns conns $size B $mode $sink $server run $run: $(printf '%.0f' "$mps") msgs/s, $per_cpu msgs/CPU-s, p99 ${p99}us"
		done
	done
done; done; done; done

col() { # conns size mode sink server column -> values
	awk -F'\t' -v c="$1" -v s="$2" -v m="$3" -v k="$4" -v srv="$5" -v col="$6" \
		'NR>1 && $1==c && $2==s && $3==m && $4==k && $5==srv {print $col}' "$TSV"
}

{
	echo "## Ingest over TCP: ingestd (gyre) vs ingest-net (net package), $STAMP"
	echo
	echo "- kernel $(uname -r); CPU $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores; $(go version | awk '{print $3}')"
	echo "- server on CPU $CPU_SERVER (ingestd --reactors $REACTORS --engine $ENGINE, ingest-net --shards $REACTORS), ingest-load on CPU $CPU_LOAD"
	echo "- command: \`CONNS=\"$CONNS\" SIZES=\"$SIZES\" MODES=\"$MODES\" SINKS=\"$SINKS\" RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP ./scripts/bench-ingest.sh\`"
	echo "- raw numbers: \`$TSV\`; medians of $RUNS alternating runs; pipelined = 256 unacked per connection, ack = window 1"
	echo
	echo "- c: the C liburing reference (\`$C_SRC\`, discard sink rows only; no sink at all, no validation beyond framing)"
	echo "- sessions: ingestd again, every load stream in a producer session (\`ingest-load --session\`), rows with $SESSION_CONNS connections; **sess/gyre** is its msgs per CPU-s over plain ingestd's"
	echo
	echo "| conns | size | mode | sink | msgs/s gyre | msgs/s net | ratio | msgs/CPU-s gyre | msgs/CPU-s net | **gyre/net** | msgs/CPU-s C | **gyre/C** | msgs/CPU-s sessions | **sess/gyre** | p99 µs gyre | p99 µs net |"
	echo "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$MD"
noisy=()
for conns in $CONNS; do for size in $SIZES; do for mode in $MODES; do for sink in $SINKS; do
	u_mps=$(col "$conns" "$size" "$mode" "$sink" uring 7 | median)
	n_mps=$(col "$conns" "$size" "$mode" "$sink" net 7 | median)
	u_cpu=$(col "$conns" "$size" "$mode" "$sink" uring 9 | median)
	n_cpu=$(col "$conns" "$size" "$mode" "$sink" net 9 | median)
	u_p99=$(col "$conns" "$size" "$mode" "$sink" uring 11 | median)
	n_p99=$(col "$conns" "$size" "$mode" "$sink" net 11 | median)
	c_cpu=$(col "$conns" "$size" "$mode" "$sink" c 9 | median)
	s_cpu=$(col "$conns" "$size" "$mode" "$sink" session 9 | median)
	for srv in uring net c session; do
		[[ -n $(col "$conns" "$size" "$mode" "$sink" "$srv" 9) ]] || continue
		sp=$(col "$conns" "$size" "$mode" "$sink" "$srv" 9 | spread)
		if awk -v s="$sp" -v m="$MAX_SPREAD" 'BEGIN {exit !(s > m)}'; then noisy+=("$srv $conns/$size/$mode/$sink spread ${sp}%"); fi
	done
	awk -v c="$conns" -v s="$size" -v m="$mode" -v k="$sink" -v um="$u_mps" -v nm="$n_mps" -v uc="$u_cpu" -v nc="$n_cpu" -v cc="$c_cpu" -v sc="$s_cpu" -v up="$u_p99" -v np="$n_p99" \
		'BEGIN {cr = (cc>0) ? sprintf("%.0f | **%.2f**", cc, uc/cc) : "- | -"; sr = (sc>0 && uc>0) ? sprintf("%.0f | **%.2f**", sc, sc/uc) : "- | -"; printf "| %s | %s | %s | %s | %.0f | %.0f | %.2fx | %.0f | %.0f | **%.2fx** | %s | %s | %.0f | %.0f |\n", c, s, m, k, um, nm, (nm>0?um/nm:0), uc, nc, (nc>0?uc/nc:0), cr, sr, up, np}' >>"$MD"
done; done; done; done
cat "$MD"
if ((${#noisy[@]} > 0)); then
	printf 'bench-ingest: FAIL: runs too noisy to trust (spread of msgs per CPU-s over %s%%):\n' "$MAX_SPREAD" >&2
	printf '  %s\n' "${noisy[@]}" >&2
	exit 1
fi

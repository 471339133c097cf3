#!/usr/bin/env bash
# bench-quic.sh: ingest-v1 over QUIC. ingestd (gyre's quicbridge, discard
# sink) against quic-plain (bench/cmd/quic-plain: plain quic-go, messages
# handed to a channel and dropped by one consumer), under ingest-load with
# both stream styles (reuse: one long-lived stream per connection;
# per-message: DATA and FIN on a stream of its own), with reuse also
# quic-direct (quic-plain --direct: read and ACK on the reader, no queue, no
# copy: the floor of what a quic-go server costs), and ingestd over TCP
# under the same load for reference. Server and load are pinned to
# different cores; runs alternate between the servers.
#
# Per run it reports messages/s, messages per server CPU-second (the
# server's utime+stime from /proc/PID/stat, read by ingest-load
# --server-pid from the end of the warmup until every answer is in), ack
# latency percentiles, the server's CPU per connection set-up, and its
# memory per connection: Go heap and stacks in use (go_memstats_*_inuse on
# /metrics, each read right after a GC forced through /debug/pprof/heap?gc=1)
# while every connection is open and idle after the load (ingest-load
# --hold), minus the same after a warm-up load with no connection open,
# divided by the connections.
#
# It fails (exit 1) when a server does not start or dies, when a load run
# has errors, unanswered messages or NACKs, when the server does not hold
# every connection during the hold, or when a server's runs are too noisy
# (MAX_SPREAD). Run it through `make bench-quic`, which builds bin/ingestd,
# bin/ingest-load and bin/quic-plain first.
#
# Environment (defaults in brackets):
#   CONNS       connection counts                      ["1000 20000"]
#   MODES       reuse, per-message, tcp                ["reuse per-message tcp"]
#   RUNS        measured runs per server and cell      [3]
#   DURATION    measured load per run                  [5s]
#   WARMUP      load before measuring, in the run      [2s]
#               (also the length of the warm-up run before the baseline)
#   SIZE        payload bytes                          [128]
#   RATES       the load's messages/s: CONNS:RATE for every mode at that
#               many connections, MODE/CONNS:RATE for one mode (it wins);
#               cells not listed run as fast as the windows allow
#               ["1000:10000 per-message/1000:5000 20000:2000"]
#               (why fixed rates: with the load client on one core, a
#               saturating run measures the client's batching as much as
#               the server: quic-plain's own msgs/CPU-s swung 63k-119k from
#               run to run, with the datagram count per message. At a rate
#               both servers keep up with, packets per message are the same
#               for both and runs agree. A saturating load from 20,000
#               connections overflows the server's UDP receive buffer and
#               measures loss recovery; see docs/quic.md)
#   RAMP        connection i of N starts sending at i×RAMP/N (and paces from
#               there), so they do not send in lockstep  [1s]
#   WINDOW      unanswered messages per connection     [4]
#               (per-message: also the streams in flight per connection; the
#               servers allow 4)
#   QUIC_SOCKETS  UDP sockets the load's QUIC connections share  [64]
#   DIAL_PARALLEL connection attempts in flight        [32]
#               (quic-go refuses a connection whose handshake completes
#               while its accept queue of 32 is full; both servers use it)
#   CPU_SERVER / CPU_LOAD   cores                      [0 / 1]
#   PORT        127.0.0.1 port, UDP (QUIC) or TCP      [7590]
#   METRICS_PORT  the servers' /metrics port           [9590]
#   REACTORS    ingestd --reactors                     [1]
#   ENGINE      ingestd --engine                       [io_uring]
#   SERVER_GOMAXPROCS  GOMAXPROCS of both servers  [1]
#               (1 is Go's own choice for quic-plain pinned to one CPU, so the
#               comparison is at equal GOMAXPROCS. Empty: each server's own
#               choice; ingestd then raises it to reactors+2 for its TCP
#               reactors (reactor.EnsureGOMAXPROCS), which costs its QUIC
#               path 5-11% on one CPU; see docs/quic.md)
#   SETTLE      idle time after the load, before memory is read  [2s]
#   MAX_SPREAD  fail when a server's (max-min)/median of msgs per CPU-s
#               exceeds this percentage                [25]
#   RESULTS_DIR                                        [bench/results]
#   BIN         where the binaries are                 [bin]
# Output: a markdown table on stdout and in RESULTS_DIR/quic-<stamp>.md, the
# raw per-run numbers in RESULTS_DIR/quic-<stamp>.tsv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNS=${CONNS:-"1000 20000"}
MODES=${MODES:-"reuse per-message tcp"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
SIZE=${SIZE:-128}
RATES=${RATES:-"1000:10000 per-message/1000:5000 20000:2000"}
RAMP=${RAMP:-1s}
WINDOW=${WINDOW:-4}
QUIC_SOCKETS=${QUIC_SOCKETS:-64}
DIAL_PARALLEL=${DIAL_PARALLEL:-32}
CPU_SERVER=${CPU_SERVER:-0}
CPU_LOAD=${CPU_LOAD:-1}
PORT=${PORT:-7590}
METRICS_PORT=${METRICS_PORT:-9590}
REACTORS=${REACTORS:-1}
ENGINE=${ENGINE:-io_uring}
SERVER_GOMAXPROCS=${SERVER_GOMAXPROCS-1}
SETTLE=${SETTLE:-2s}
MAX_SPREAD=${MAX_SPREAD:-25}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
BIN=${BIN:-bin}
HOST=127.0.0.1
MADDR=$HOST:$METRICS_PORT
WARM_CONNS=1000 # connections of the warm-up run (at most CONNS)
FD_MARGIN=64    # descriptors a process needs besides its connections

die() { echo "bench-quic: FAIL: $*" >&2; exit 1; }
log() { echo "bench-quic: $*" >&2; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ $CPU_SERVER != "$CPU_LOAD" ]] || die "CPU_SERVER and CPU_LOAD must differ"
for b in ingestd ingest-load quic-plain; do
	[[ -x $BIN/$b ]] || die "$BIN/$b not found: run 'make bench-quic' (it builds them)"
done
for m in $MODES; do [[ $m == reuse || $m == per-message || $m == tcp ]] || die "MODES: reuse, per-message or tcp, not '$m'"; done
for c in $CONNS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "CONNS: positive integers, not '$c'"; done
for t in curl jq taskset; do command -v "$t" >/dev/null || die "$t is needed"; done
ulimit -n "$(ulimit -Hn)" # TCP connections need a descriptor each, on both sides
NOFILE=$(ulimit -n)

tcp_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
tcp_open "$PORT" && die "something already listens on TCP $HOST:$PORT; set PORT"
tcp_open "$METRICS_PORT" && die "something already listens on $MADDR; set METRICS_PORT"
if command -v ss >/dev/null && [[ -n $(ss -Hunl "sport = :$PORT") ]]; then
	die "something already listens on UDP $HOST:$PORT; set PORT"
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$RESULTS_DIR/tmp/quic-$STAMP"
mkdir -p "$RAW"
TSV="$RESULTS_DIR/quic-$STAMP.tsv"
MD="$RESULTS_DIR/quic-$STAMP.md"
printf 'conns\tmode\tserver\trun\tmsgs_per_s\tcpu_s\tmsgs_per_cpu_s\tp50_us\tp99_us\tp999_us\tacked\terrors\tunanswered\tnacks\theap_base\theap_held\tstack_base\tstack_held\theap_b_per_conn\tstack_b_per_conn\tconnect_cpu_us_per_conn\tserver_conns_held\tudp_drops_server\tudp_drops_load\n' >"$TSV"

SERVER_PID=
LOAD_PID=
stop_pid() { # pid
	if [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; then
		kill -TERM "$1" 2>/dev/null || true
		wait "$1" 2>/dev/null || true
	fi
}
cleanup() { stop_pid "$LOAD_PID"; stop_pid "$SERVER_PID"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

metric() { # name -> value of an unlabelled metric on the server's /metrics
	curl -sf "http://$MADDR/metrics" | awk -v n="$1" '$1 == n {printf "%.0f\n", $2; found=1} END {if (!found) print -1}'
}

# memory prints "heap_inuse stack_inuse" of the server right after a GC.
memory() {
	curl -sf -o /dev/null "http://$MADDR/debug/pprof/heap?gc=1" || die "forcing a GC on the $1 server failed"
	echo "$(metric go_memstats_heap_inuse_bytes) $(metric go_memstats_stack_inuse_bytes)"
}

start_server() { # server mode conns
	local server=$1 mode=$2 conns=$3
	local env=()
	[[ -n $SERVER_GOMAXPROCS ]] && env=(GOMAXPROCS="$SERVER_GOMAXPROCS")
	case $server in
	ingestd)
		local quic="$HOST:$PORT" tcp="$HOST:0" # ingestd always serves TCP
		[[ $mode == tcp ]] && quic="" tcp="$HOST:$PORT"
		# --quic-max-conns only when the default (20,000) is too small.
		local maxc=()
		((conns > 20000)) && maxc=(--quic-max-conns "$conns")
		env "${env[@]}" taskset -c "$CPU_SERVER" "$BIN/ingestd" --tcp "$tcp" --quic "$quic" "${maxc[@]}" --metrics "$MADDR" --pprof \
			--reactors "$REACTORS" --engine "$ENGINE" --sink discard --log-level warn >"$RAW/server.log" 2>&1 &
		;;
	quic-plain)
		env "${env[@]}" taskset -c "$CPU_SERVER" "$BIN/quic-plain" --addr "$HOST:$PORT" --metrics "$MADDR" >"$RAW/server.log" 2>&1 &
		;;
	quic-direct)
		env "${env[@]}" taskset -c "$CPU_SERVER" "$BIN/quic-plain" --direct --addr "$HOST:$PORT" --metrics "$MADDR" >"$RAW/server.log" 2>&1 &
		;;
	esac
	SERVER_PID=$!
	for _ in $(seq 100); do
		curl -sf -o /dev/null "http://$MADDR/metrics" && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || die "$server exited at start: $(tail -3 "$RAW/server.log")"
		sleep 0.1
	done
	die "$server did not serve $MADDR/metrics within 10s"
}

stop_server() {
	stop_pid "$SERVER_PID"
	SERVER_PID=
	for _ in $(seq 50); do tcp_open "$METRICS_PORT" || return 0; sleep 0.1; done
}

active_metric() { # server mode -> the metric counting its open connections
	case $1/$2 in
	ingestd/tcp) echo gyre_ingest_connections_active ;;
	ingestd/*) echo gyre_quic_connections_active ;;
	*) echo quicplain_connections_active ;;
	esac
}

# sock_drops prints the datagrams dropped on full receive buffers of the
# UDP sockets process pid holds (/proc/net/udp and udp6, by inode).
sock_drops() { # pid
	local inodes
	inodes=$(find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n')
	awk -v list="$inodes" 'BEGIN {n = split(list, a, "\n"); for (i = 1; i <= n; i++) want[a[i]] = 1}
		FNR > 1 && ($10 in want) {d += $NF} END {print d + 0}' /proc/net/udp /proc/net/udp6
}

rate_for() { # mode conns -> messages/s (0: unlimited)
	local p
	for p in $RATES; do [[ ${p%%:*} == "$1/$2" ]] && { echo "${p#*:}"; return; }; done
	for p in $RATES; do [[ ${p%%:*} == "$2" ]] && { echo "${p#*:}"; return; }; done
	echo 0
}

load_args() { # mode conns
	echo -n "--size $SIZE --rate $(rate_for "$1" "$2") --ramp $RAMP "
	case $1 in
	tcp) echo "--addr $HOST:$PORT --conns $2 --window $WINDOW --dial-parallel $DIAL_PARALLEL" ;;
	reuse) echo "--transport quic --insecure --addr $HOST:$PORT --quic-sockets $QUIC_SOCKETS --quic-streams reuse --streams 1 --conns $2 --window $WINDOW --dial-parallel $DIAL_PARALLEL" ;;
	per-message) echo "--transport quic --insecure --addr $HOST:$PORT --quic-sockets $QUIC_SOCKETS --quic-streams per-message --streams $WINDOW --conns $2 --window $WINDOW --dial-parallel $DIAL_PARALLEL" ;;
	esac
}

# check_load fails unless a load run answered every message with an ACK.
check_load() { # json what
	local errs unans nacks measured
	read -r errs unans nacks measured < <(jq -r '[.errors, .unanswered, ([.nacks[]] | add), .measured_messages] | @tsv' "$1")
	[[ $errs == 0 && $unans == 0 && $nacks == 0 ]] ||
		die "$2: $errs errors, $unans unanswered, $nacks NACKs: $(jq -c .error_samples "$1")"
	[[ $measured -gt 0 ]] || die "$2: no message was measured (the load stopped before its measured phase?)"
}

# wait_idle waits until the server holds no connection (ingestd counts
# them; quic-plain too): the baseline must not include the warm-up's.
wait_idle() { # server mode
	local m
	m=$(active_metric "$1" "$2")
	for _ in $(seq 100); do
		[[ $(metric "$m") == 0 ]] && return 0
		sleep 0.1
	done
	die "$1 still holds $(metric "$m") connections 10s after the warm-up"
}

# run_one: one measured run; appends a TSV row.
run_one() { # conns mode server run
	local conns=$1 mode=$2 server=$3 run=$4 args
	args=$(load_args "$mode" "$conns")
	start_server "$server" "$mode" "$conns"
	# shellcheck disable=SC2086 # args are words
	taskset -c "$CPU_LOAD" "$BIN/ingest-load" $args --conns "$((conns < WARM_CONNS ? conns : WARM_CONNS))" --duration "$WARMUP" --drain-timeout 30s \
		--connect-timeout 30s --json --progress=false >"$RAW/warm.json" 2>"$RAW/warm.err" ||
		die "warm-up load against $server ($mode) failed: $(tail -3 "$RAW/warm.err")"
	check_load "$RAW/warm.json" "warm-up against $server ($mode)"
	wait_idle "$server" "$mode"
	sleep 1
	local base
	base=$(memory "$server")

	local drops0
	drops0=$(sock_drops "$SERVER_PID")
	# Empty it first: the wait below must not find the previous run's
	# "holding" before this load has opened (and truncated) the file.
	: >"$RAW/run.err"
	# shellcheck disable=SC2086
	taskset -c "$CPU_LOAD" "$BIN/ingest-load" $args --warmup "$WARMUP" --duration "$DURATION" --hold 10m \
		--server-pid "$SERVER_PID" --connect-timeout 30s --drain-timeout 30s --json --progress=false >"$RAW/run.json" 2>"$RAW/run.err" &
	LOAD_PID=$!
	until grep -q '^ingest-load: holding' "$RAW/run.err"; do
		kill -0 "$LOAD_PID" 2>/dev/null || break # it ended without holding: errors, reported below
		kill -0 "$SERVER_PID" 2>/dev/null || die "$server died during the run ($conns conns, $mode)"
		sleep 0.2
	done
	local held=-1 mem="-1 -1" drops="-1 -1"
	if kill -0 "$LOAD_PID" 2>/dev/null; then
		sleep "$SETTLE"
		held=$(metric "$(active_metric "$server" "$mode")")
		mem=$(memory "$server")
		drops="$(($(sock_drops "$SERVER_PID") - drops0)) $(sock_drops "$LOAD_PID")"
		kill -TERM "$LOAD_PID" 2>/dev/null || true
	fi
	local rc=0
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=
	kill -0 "$SERVER_PID" 2>/dev/null || die "$server died during the run ($conns conns, $mode)"
	stop_server
	[[ -s $RAW/run.json ]] || die "ingest-load against $server printed no result (exit $rc): $(tail -3 "$RAW/run.err")"
	check_load "$RAW/run.json" "$server, $conns conns, $mode, run $run"
	((rc == 0)) || die "ingest-load against $server exited $rc: $(tail -3 "$RAW/run.err")"
	[[ $held == "$conns" ]] || die "$server held $held of $conns connections after the load ($mode)"

	local mps cpu per_cpu p50 p99 p999 acked dial hb sb hh sh
	read -r mps cpu per_cpu p50 p99 p999 acked dial < <(jq -r '[.messages_per_second, .server_cpu_seconds, .messages_per_server_cpu_second,
		.latency_us.p50, .latency_us.p99, .latency_us.p999, .messages_acked, .server_cpu_dial_seconds] | @tsv' "$RAW/run.json")
	read -r hb sb <<<"$base"
	read -r hh sh <<<"$mem"
	local dsrv dload
	read -r dsrv dload <<<"$drops"
	awk -v c="$conns" -v mode="$mode" -v srv="$server" -v run="$run" -v mps="$mps" -v cpu="$cpu" -v pc="$per_cpu" \
		-v p50="$p50" -v p99="$p99" -v p999="$p999" -v acked="$acked" -v dial="$dial" -v hb="$hb" -v hh="$hh" -v sb="$sb" -v sh="$sh" -v held="$held" -v dsrv="$dsrv" -v dload="$dload" \
		'BEGIN {printf "%s\t%s\t%s\t%s\t%.0f\t%s\t%.0f\t%s\t%s\t%s\t%s\t0\t0\t0\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.1f\t%s\t%s\t%s\n",
			c, mode, srv, run, mps, cpu, pc, p50, p99, p999, acked, hb, hh, sb, sh, (hh-hb)/c, (sh-sb)/c, dial*1e6/c, held, dsrv, dload}' >>"$TSV"
	log "$conns conns $mode $server run $run: $(printf '%.0f' "$mps") msgs/s, $(printf '%.0f' "$per_cpu") msgs/CPU-s, p99 ${p99}us, heap $(((hh - hb) / conns)) B/conn, $held conns held, UDP drops $dsrv at the server, $dload at the load"
}

log "results: $TSV"
skipped=()
for conns in $CONNS; do
	for mode in $MODES; do
		servers="ingestd quic-plain"
		[[ $mode == reuse ]] && servers="ingestd quic-plain quic-direct"
		if [[ $mode == tcp ]]; then
			servers=ingestd
			if ((conns + FD_MARGIN > NOFILE)); then
				skipped+=("TCP at $conns connections: RLIMIT_NOFILE is $NOFILE (hard limit), and the server and the load each need a descriptor per connection plus about $FD_MARGIN of their own")
				log "skipping tcp at $conns conns (RLIMIT_NOFILE $NOFILE)"
				continue
			fi
		fi
		for run in $(seq "$RUNS"); do
			for server in $servers; do
				run_one "$conns" "$mode" "$server" "$run"
			done
		done
	done
done

col() { # conns mode server column -> values
	awk -F'\t' -v c="$1" -v m="$2" -v s="$3" -v col="$4" 'NR>1 && $1==c && $2==m && $3==s {print $col}' "$TSV"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print ""} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
minmax() { sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.0f–%.0f", lo, hi}'; }
spread() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; if (m<=0) print 0; else printf "%.1f", (a[NR]-a[1])*100/m}'; }

{
	echo "## Ingest over QUIC: ingestd (gyre quicbridge) vs quic-plain (plain quic-go), $STAMP"
	echo
	echo "- kernel $(uname -r); CPU $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores; $(go version 2>/dev/null | awk '{print $3}'); quic-go v0.65.0"
	echo "- server on CPU $CPU_SERVER, GOMAXPROCS ${SERVER_GOMAXPROCS:-default} (ingestd --reactors $REACTORS --engine $ENGINE --sink discard, QUIC defaults; quic-plain: the same quic.Config limits, one consumer goroutine), ingest-load on CPU $CPU_LOAD"
	echo "- load: $SIZE B payloads, $WINDOW unanswered per connection (reuse: 1 stream per connection; per-message: $WINDOW streams in flight), QUIC connections over $QUIC_SOCKETS shared UDP sockets, dialed $DIAL_PARALLEL at a time, starts spread over $RAMP, $WARMUP warmup then $DURATION measured; rate as fast as the windows allow except ([mode/]conns:msgs/s) $RATES"
	echo "- command: \`CONNS=\"$CONNS\" MODES=\"$MODES\" RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP SIZE=$SIZE RATES=\"$RATES\" RAMP=$RAMP SERVER_GOMAXPROCS=\"$SERVER_GOMAXPROCS\" WINDOW=$WINDOW DIAL_PARALLEL=$DIAL_PARALLEL ./scripts/bench-quic.sh\`"
	echo "- raw numbers: \`$TSV\`; medians of $RUNS alternating runs, msgs/CPU-s with min–max"
	echo "- memory per connection: Go heap (and stacks) in use after a forced GC, all connections open and idle after the load, minus the same with none open after a warm-up run, divided by the connections"
	echo "- ratio: msgs per server CPU-second against quic-plain with the same connections and stream style (TCP: against quic-plain reuse); UDP drops: datagrams dropped on the full receive buffers of the server's socket and of the load's sockets during the run"
	echo
	echo "| conns | transport | server | offered | msgs/s | msgs/CPU-s | min–max | **ratio** | ack p50 ms | p99 ms | p99.9 ms | heap KB/conn | stacks KB/conn | connect CPU µs/conn | UDP drops server / load |"
	echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$MD"
noisy=()
verdict=()
for conns in $CONNS; do
	for mode in $MODES; do
		ref_mode=$mode
		[[ $mode == tcp ]] && ref_mode=reuse
		ref=$(col "$conns" "$ref_mode" quic-plain 7 | median)
		for server in ingestd quic-plain quic-direct; do
			[[ -n $(col "$conns" "$mode" "$server" 7 | head -1) ]] || continue
			label="QUIC $mode"
			[[ $mode == tcp ]] && label=TCP
			pc=$(col "$conns" "$mode" "$server" 7 | median)
			offered=max
			[[ $(rate_for "$mode" "$conns") != 0 ]] && offered="$(rate_for "$mode" "$conns")/s"
			awk -v c="$conns" -v l="$label" -v s="$server" -v off="$offered" -v mps="$(col "$conns" "$mode" "$server" 5 | median)" -v pc="$pc" \
				-v mm="$(col "$conns" "$mode" "$server" 7 | minmax)" -v ref="$ref" \
				-v p50="$(col "$conns" "$mode" "$server" 8 | median)" -v p99="$(col "$conns" "$mode" "$server" 9 | median)" \
				-v p999="$(col "$conns" "$mode" "$server" 10 | median)" -v hk="$(col "$conns" "$mode" "$server" 19 | median)" \
				-v sk="$(col "$conns" "$mode" "$server" 20 | median)" -v dc="$(col "$conns" "$mode" "$server" 21 | median)" \
				-v ud="$(col "$conns" "$mode" "$server" 23 | median)" -v ul="$(col "$conns" "$mode" "$server" 24 | median)" \
				'BEGIN {r = (ref > 0) ? sprintf("**%.2fx**", pc/ref) : "–"
					printf "| %s | %s | %s | %s | %.0f | %.0f | %s | %s | %.2f | %.2f | %.2f | %.1f | %.1f | %.0f | %.0f / %.0f |\n",
						c, l, s, off, mps, pc, mm, r, p50/1000, p99/1000, p999/1000, hk/1024, sk/1024, dc, ud, ul}' >>"$MD"
			sp=$(col "$conns" "$mode" "$server" 7 | spread)
			if awk -v s="$sp" -v m="$MAX_SPREAD" 'BEGIN {exit !(s > m)}'; then noisy+=("$server $conns/$mode spread ${sp}%"); fi
		done
		if [[ $mode != tcp && -n $ref ]]; then
			g=$(col "$conns" "$mode" ingestd 7 | median)
			[[ -n $g ]] && verdict+=("$(awk -v c="$conns" -v m="$mode" -v g="$g" -v r="$ref" 'BEGIN {cost=(1-g/r)*100
				printf "- %s connections, %s: the bridge costs %.1f%% of quic-plain'"'"'s messages per CPU-second (target at most 10%%: %s)", c, m, cost, (cost <= 10 ? "met" : "NOT met")}')")
			d=$(col "$conns" "$mode" quic-direct 7 | median)
			[[ -n $g && -n $d ]] && verdict+=("$(awk -v c="$conns" -v m="$mode" -v g="$g" -v r="$d" 'BEGIN {
				printf "- %s connections, %s: ingestd does %.2fx quic-direct'"'"'s messages per CPU-second (read and ACK, no queue, no sink; target at least 0.9x: %s)", c, m, g/r, (g/r >= 0.9 ? "met" : "NOT met")}')")
		fi
	done
done
{
	echo
	printf '%s\n' "${verdict[@]}"
	failed=$(awk -F'\t' 'NR>1 && $2!="tcp" {n++; f+=$12+$13+$14} END {printf "%d QUIC runs, %d failed messages (errors + unanswered + NACKs)", n, f}' "$TSV")
	echo "- $failed; every run held all its connections after the load"
	for s in "${skipped[@]}"; do echo "- not run: $s"; done
} >>"$MD"
cat "$MD"
if ((${#noisy[@]} > 0)); then
	printf 'bench-quic: FAIL: runs too noisy to trust (spread of msgs per CPU-s over %s%%):\n' "$MAX_SPREAD" >&2
	printf '  %s\n' "${noisy[@]}" >&2
	exit 1
fi

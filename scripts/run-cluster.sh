#!/usr/bin/env bash
# make run-cluster: a three-node NATS JetStream cluster and two ingestd
# nodes on loopback, to try failures by hand (docs/scale-out.md).
#
#   NATS n1, n2, n3   clients 127.0.0.1:4222-4224, routes 6222-6224,
#                     monitoring http://127.0.0.1:8222-8224;
#                     jetstream sync_interval: always; stream INGEST, R3
#   ingestd A, B      TCP (and QUIC, UDP) 127.0.0.1:7401 and 7402,
#                     metrics and /healthz http://127.0.0.1:9401 and 9402,
#                     --sink jetstream on all three NATS nodes
#
# Everything it runs is built from this module into ./bin (ingestd,
# ingest-load, nats-server from the nats-server module gyre requires, and
# jsinit, which creates the stream); data, logs and pid files go to
# $CLUSTER_DIR (default ./cluster-data), emptied at start unless
# CLUSTER_KEEP=1. A process that dies (kill -9 it) is started again after
# $RESTART_DELAY seconds (default 5; 0: never). Ctrl-C stops everything:
# the ingestd nodes first (they drain), then NATS.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
DIR=${CLUSTER_DIR:-./cluster-data}
RESTART_DELAY=${RESTART_DELAY:-5}
NATS_PORTS=(4222 4223 4224)
ROUTE_PORTS=(6222 6223 6224)
MON_PORTS=(8222 8223 8224)
INGEST_PORTS=(7401 7402)
METRICS_PORTS=(9401 9402)

# Something already listening would make a node fail at once, again and
# again: say so before starting anything.
for p in "${NATS_PORTS[@]}" "${ROUTE_PORTS[@]}" "${MON_PORTS[@]}" "${INGEST_PORTS[@]}" "${METRICS_PORTS[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "run-cluster: port $p on 127.0.0.1 is in use (an earlier run-cluster still running?); stop it first" >&2
		exit 1
	fi
done

echo "run-cluster: building ingestd, ingest-load, nats-server and jsinit into ./bin"
mkdir -p bin
$GO build -o bin/ ./cmd/ingestd ./cmd/ingest-load
$GO build -o bin/nats-server github.com/nats-io/nats-server/v2
$GO build -o bin/jsinit ./internal/cmd/jsinit

if [ "${CLUSTER_KEEP:-0}" != 1 ]; then
	rm -rf "$DIR"
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
rm -f "$DIR/.stopping"

routes=""
for p in "${ROUTE_PORTS[@]}"; do
	routes="${routes:+$routes, }\"nats-route://127.0.0.1:$p\""
done
nats_urls=""
for p in "${NATS_PORTS[@]}"; do
	nats_urls="${nats_urls:+$nats_urls,}nats://127.0.0.1:$p"
done

# Background jobs get process groups of their own: Ctrl-C reaches this
# script only, which then stops them in order.
set -m
names=()
supervisors=()

# supervise NAME CMD...: runs CMD, logging to $DIR/NAME.log, its pid in
# $DIR/NAME.pid; starts it again after $RESTART_DELAY s when it dies,
# until the script stops.
supervise() {
	local name=$1
	shift
	(
		while [ ! -e "$DIR/.stopping" ]; do
			"$@" >>"$DIR/$name.log" 2>&1 &
			echo $! >"$DIR/$name.pid"
			status=0
			wait $! || status=$?
			[ -e "$DIR/.stopping" ] && break
			echo "run-cluster: $name exited (status $status)$([ "$RESTART_DELAY" != 0 ] && echo "; starting it again in ${RESTART_DELAY}s")" >&2
			[ "$RESTART_DELAY" = 0 ] && break
			sleep "$RESTART_DELAY"
		done
	) &
	names+=("$name")
	supervisors+=($!)
}

stopping=0
stop_all() {
	[ "$stopping" = 1 ] && return
	stopping=1
	[ ${#supervisors[@]} = 0 ] && return
	touch "$DIR/.stopping"
	echo
	echo "run-cluster: stopping (ingestd nodes drain first, then NATS)"
	for group in ingestd nats; do
		for i in "${!names[@]}"; do
			name=${names[$i]}
			case "$group/$name" in ingestd/ingestd-* | nats/nats-*) ;; *) continue ;; esac
			pid=$(cat "$DIR/$name.pid" 2>/dev/null || true)
			if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
		done
		for i in "${!names[@]}"; do
			name=${names[$i]}
			case "$group/$name" in ingestd/ingestd-* | nats/nats-*) ;; *) continue ;; esac
			wait "${supervisors[$i]}" 2>/dev/null || true
		done
	done
	echo "run-cluster: stopped; data and logs in $DIR"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

for i in 0 1 2; do
	n=$((i + 1))
	mkdir -p "$DIR/n$n"
	cat >"$DIR/n$n.conf" <<EOF
server_name: n$n
listen: 127.0.0.1:${NATS_PORTS[$i]}
http: 127.0.0.1:${MON_PORTS[$i]}
jetstream {
  store_dir: "$DIR/n$n"
  # fsync every message before the PubAck (the default fsyncs every 2 minutes)
  sync_interval: always
}
cluster {
  name: gyre-local
  listen: 127.0.0.1:${ROUTE_PORTS[$i]}
  routes: [ $routes ]
}
EOF
	supervise "nats-n$n" bin/nats-server -c "$DIR/n$n.conf"
done

echo "run-cluster: waiting for JetStream, creating stream INGEST (R3)"
# In the background, so that Ctrl-C is handled at once.
bin/jsinit -url "$nats_urls" -stream INGEST -subjects 'ingest.>' -replicas 3 -wait 60s &
if ! wait $!; then
	echo "run-cluster: no stream: see the NATS logs, $DIR/nats-n*.log" >&2
	exit 1
fi

for i in 0 1; do
	node=$([ $i = 0 ] && echo A || echo B)
	supervise "ingestd-$node" bin/ingestd --sink jetstream --nats-url "$nats_urls" --stream INGEST --subject ingest.records \
		--tcp "127.0.0.1:${INGEST_PORTS[$i]}" --quic "127.0.0.1:${INGEST_PORTS[$i]}" --metrics "127.0.0.1:${METRICS_PORTS[$i]}"
done

# Ready when both answer /healthz (they store once NATS has the stream).
for port in "${METRICS_PORTS[@]}"; do
	for _ in $(seq 1 150); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
done

cat <<EOF

run-cluster: running (logs, pid files and data in $DIR)

  NATS n1, n2, n3    ${nats_urls}
                     monitoring http://127.0.0.1:${MON_PORTS[0]}/jsz?streams=true (8223, 8224)
  ingestd A          tcp://127.0.0.1:${INGEST_PORTS[0]}   /healthz and /metrics on http://127.0.0.1:${METRICS_PORTS[0]}
  ingestd B          tcp://127.0.0.1:${INGEST_PORTS[1]}   /healthz and /metrics on http://127.0.0.1:${METRICS_PORTS[1]}
  stream INGEST      R3, file storage, sync_interval always, subject ingest.records;
                     sessions in the key-value bucket INGEST_sessions (R3)

Load either node, with sessions:
  bin/ingest-load --addr 127.0.0.1:${INGEST_PORTS[0]} --session --conns 16 --duration 60s
  bin/ingest-load --addr 127.0.0.1:${INGEST_PORTS[1]} --session --conns 16 --duration 60s
(a Go program using ingest/client with Endpoints tcp://127.0.0.1:${INGEST_PORTS[0]} and
tcp://127.0.0.1:${INGEST_PORTS[1]} moves its session to the other node when one dies)

Kill any of them, and watch the others and /healthz:
  kill -9 \$(cat $DIR/ingestd-A.pid)      kill -9 \$(cat $DIR/nats-n2.pid)
$(if [ "$RESTART_DELAY" != 0 ]; then echo "a killed process is started again after ${RESTART_DELAY}s (RESTART_DELAY=0: never)"; else echo "killed processes stay down"; fi)

Stop everything: Ctrl-C (or kill $$)
EOF

# Until Ctrl-C: the supervisors run in the background.
while :; do
	sleep 1 &
	wait $! || true
done

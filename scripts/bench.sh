#!/usr/bin/env bash
# bench.sh: gyre (its io_uring engine, and its epoll engine as the server
# "gyre-epoll") vs the net package vs gnet v2, measured by the harness in
# bench/ (bench/cmd/gyre-bench): HTTP under wrk, pipelined echo, accept
# storm, idle connections, latency under load, ingest over TCP. gyre-epoll
# runs in the HTTP, echo and idle cells.
#
#   make bench                 # ./scripts/bench.sh quick   (< 10 minutes on 2 cores)
#   make bench-full            # ./scripts/bench.sh full
#   ./scripts/bench.sh quick -runs 5 -workloads http,echo   # more flags: gyre-bench run -h
#   ./scripts/bench.sh quick -cells 'http-*,idle-*'         # some cells only
#   ./scripts/bench.sh quick -engine epoll -servers gyre,gnet,net   # gyre's engine (default io_uring)
#
# It installs what it needs and is missing (wrk and taskset with apt-get),
# builds the root binaries (make build) and the bench module's binaries
# (bench/bin), then runs the harness with the server pinned to CPU_SERVER
# and the load to CPU_LOAD. Results: bench/results/<matrix>-<timestamp>/
# (results.json, summary.md, PNG and SVG charts); logs and client outputs
# under bench/results/tmp/ (git-ignored). The markdown summary is also
# printed on stdout.
#
# Exit status is non-zero, with the reason on stderr and no table, when a
# tool cannot be installed or a build fails, a server fails to start or
# dies, a load client sees errors, or a gated figure of a cell spreads
# over -spread-max (25% by default: (max-min)/median of one server's runs)
# even after the cell is measured again.
#
# Environment: CPU_SERVER [0], CPU_LOAD [1]. Smallest functional check
# (not a result: one run has no spread to gate):
#   ./scripts/bench.sh quick -runs 1 -duration 1s -warmup 0s
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS

die() {
	echo "bench: FAIL: $*" >&2
	exit 1
}
log() { echo "bench: $*" >&2; }

matrix=${1:-quick}
[[ $# -gt 0 ]] && shift
[[ $matrix == quick || $matrix == full ]] || die "first argument must be quick or full, not '$matrix'"
CPU_SERVER=${CPU_SERVER:-0}
CPU_LOAD=${CPU_LOAD:-1}
[[ $CPU_SERVER =~ ^[0-9]+$ && $CPU_LOAD =~ ^[0-9]+$ ]] || die "CPU_SERVER and CPU_LOAD must be CPU numbers"
[[ $CPU_SERVER != "$CPU_LOAD" ]] || die "CPU_SERVER and CPU_LOAD must differ (both are $CPU_SERVER)"

# ---------------------------------------------------------------- tools

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	SUDO=(sudo)
fi
apt_updated=no
install_pkg() { # install_pkg COMMAND PACKAGE
	command -v "$1" >/dev/null && return 0
	command -v apt-get >/dev/null || die "'$1' is missing and there is no apt-get to install $2; install it by hand"
	if [[ ${#SUDO[@]} -gt 0 ]] && ! command -v sudo >/dev/null; then
		die "'$1' is missing; not root and no sudo to install $2"
	fi
	log "'$1' not found: installing $2 with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	if ! "${SUDO[@]}" apt-get install -y "$2" >&2; then
		if [[ $apt_updated == no ]]; then
			"${SUDO[@]}" apt-get update >&2 || die "apt-get update failed"
			apt_updated=yes
		fi
		"${SUDO[@]}" apt-get install -y "$2" >&2 || die "apt-get install -y $2 failed"
	fi
	command -v "$1" >/dev/null || die "'$1' still not in PATH after installing $2"
}
install_pkg wrk wrk
install_pkg taskset util-linux
install_pkg git git
command -v go >/dev/null || die "the Go toolchain (go 1.26) is not in PATH"

for cpu in "$CPU_SERVER" "$CPU_LOAD"; do
	taskset -c "$cpu" true 2>/dev/null || die "cannot pin to CPU $cpu (nproc=$(nproc)); set CPU_SERVER and CPU_LOAD"
done

# ---------------------------------------------------------------- build

log "building the root binaries (make build) and the bench module's (bench/bin)"
make --no-print-directory build >&2 || die "make build failed"
(cd bench && go build -o bin/ ./cmd/gyre-bench ./cmd/gnet-echo ./cmd/ingest-net) >&2 ||
	die "building bench/cmd/{gyre-bench,gnet-echo,ingest-net} failed"

# ---------------------------------------------------------------- run

export GYRE_BENCH_INVOCATION=${GYRE_BENCH_INVOCATION:-"./scripts/bench.sh $matrix${*:+ $*}"}
rc=0
(cd bench && ./bin/gyre-bench run -matrix "$matrix" -cpu-server "$CPU_SERVER" -cpu-load "$CPU_LOAD" \
	-root-bin ../bin -bench-bin bin -out results "$@") || rc=$?
elapsed=$((SECONDS - started))
if ((rc != 0)); then
	echo "bench: FAILED after ${elapsed}s (exit status $rc); see the messages above" >&2
	exit "$rc"
fi
log "done in $((elapsed / 60))m$((elapsed % 60))s, builds included"

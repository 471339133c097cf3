# gyre's build entry points. Plain `go build` works: gyre reaches io_uring
# through its own code on golang.org/x/sys. Only internal/uring's tests
# link giouring (an independent oracle for the kernel ABI), and giouring's
# go:linkname needs -ldflags=-checklinkname=0: that one test run gets it.

GO        ?= go
PKGS      := ./...
# every package but internal/uring (tested on its own, with the oracle's flag)
NOORACLE  = $$($(GO) list ./... | grep -v /internal/uring$$)
ORACLE_FLAGS := -ldflags=-checklinkname=0
# the suites that run once more on the epoll engine (io_uring is the
# default here): everything that serves connections
ENGINE_PKGS := ./reactor/ ./acceptor/ ./gyrenet/ ./http1/ ./ingest/ ./quicbridge/ ./cmd/...
BIN       := bin
STATICCHECK_VERSION := v0.8.2

.PHONY: all build test test-short test-hostile lint run run-cluster bench bench-http bench-httpfw bench-ingest bench-quic clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## test: what CI runs. vet; the whole suite with the race detector on the
## engine Auto picks (io_uring here), then the serving suites again on
## epoll (GYRE_ENGINE, see reactor.EngineAuto) and the reactor, gyrenet and
## http1 suites on the net engine; the zero-allocation tests without -race (the race detector
## allocates, so they skip under it); a fresh module outside the repo that
## imports every public package with a plain go build, and builds for
## darwin and freebsd; a short fuzz run of the ingest frame decoder; the
## benchmark module's own unit tests; the hostile-client matrix
## (test-hostile, about 30 s).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 14m $(NOORACLE)
	$(GO) test -race -count=1 $(ORACLE_FLAGS) ./internal/uring/
	GYRE_ENGINE=epoll $(GO) test -race -count=1 -timeout 10m $(ENGINE_PKGS)
	GYRE_ENGINE=net $(GO) test -race -count=1 -timeout 5m ./reactor/ ./gyrenet/ ./http1/
	$(GO) test -count=1 -run 'Alloc' -v ./reactor/ ./gyrenet/ ./http1/ ./ingest/ ./cmd/ingest-load/ | grep -E '^(=== RUN|--- |ok|FAIL|PASS)'
	./scripts/check-importable.sh
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime 15s ./ingest/
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(MAKE) test-hostile

## test-short: the suite without -race, for a quick local check.
test-short:
	$(GO) test -count=1 -short $(NOORACLE)

## test-hostile: the attack matrix against a running ingestd (issue 15),
## on loopback, about 30 s on 2 cores (cmd/ingestd/hostile_test.go, build
## tag hostile; TestMain runs go build for the ingestd binary): 1,000
## stalled 1 MiB frames against --frame-memory (peak RSS, a healthy
## client's ACK p99, every attacker cut off by --frame-timeout, RSS back
## afterwards), 1,000 slowloris connections, a full disk freed again
## (NACK 6, /healthz 503, exactly the ACKed records stored) and five
## SIGKILLs under pipelined load. Descriptors running out during a segment
## rotation are covered by the regular suite (make test: the fdexhaust
## tests in cmd/ingestd). Needs root (tmpfs) and ulimit -n >= 1512.
test-hostile:
	$(GO) test -tags hostile -count=1 -run Hostile -v -timeout 10m ./cmd/ingestd/

## lint: vet, gofmt and staticcheck (installed into ./bin if missing).
lint: $(BIN)/staticcheck
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(BIN)/staticcheck $(PKGS)
	@out=$$(grep -rl --include='*.go' 'pawelgaczynski/giouring' . | grep -v '_test.go$$'); if [ -n "$$out" ]; then echo "giouring outside tests:"; echo "$$out"; exit 1; fi

$(BIN)/staticcheck:
	GOBIN=$(CURDIR)/$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## run: the main job: the ingest node on embedded defaults (TCP 127.0.0.1:7400,
## file sink in ./data, metrics on 127.0.0.1:9400). Ctrl-C drains and exits.
run:
	$(GO) run ./cmd/ingestd --sink file --data-dir ./data

## run-cluster: a three-node NATS JetStream cluster (stream INGEST, R3,
## sync_interval always) and two ingestd nodes (tcp 127.0.0.1:7401 and
## 7402) on loopback, to run ingest-load against either and kill -9 any
## of them (scripts/run-cluster.sh, docs/scale-out.md). Builds what it
## needs into ./bin; data and logs in ./cluster-data. Ctrl-C stops all.
run-cluster:
	GO=$(GO) ./scripts/run-cluster.sh

## bench-micro: hot-path micro-benchmarks with allocation counts.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./reactor/ ./ingest/

## bench: gyre vs gnet vs net, the quick matrix (under 10 minutes on 2
## cores): builds everything, installs wrk if missing; JSON, markdown table
## and charts in bench/results/ (see docs/benchmarks.md). Exits non-zero,
## with no table, when a server or client fails or the runs are too noisy.
## BENCH_FLAGS passes gyre-bench run flags, e.g. BENCH_FLAGS="-runs 5".
bench:
	GYRE_BENCH_INVOCATION="make bench$(if $(BENCH_FLAGS), BENCH_FLAGS=\"$(BENCH_FLAGS)\")" ./scripts/bench.sh quick $(BENCH_FLAGS)

## bench-full: the whole matrix (every connection count, size, load, shape).
bench-full:
	GYRE_BENCH_INVOCATION="make bench-full$(if $(BENCH_FLAGS), BENCH_FLAGS=\"$(BENCH_FLAGS)\")" ./scripts/bench.sh full $(BENCH_FLAGS)

## bench-http: gyre vs net, HTTP fixed response under wrk, pinned cores.
bench-http: build
	./scripts/bench-http.sh

## bench-httpfw: the HTTP-framework workload (issue 11): gyre-http native and
## net/http faces vs net/http, fasthttp and nbhttp under wrk on pinned cores,
## plus memory per idle keep-alive connection (see docs/benchmarks.md).
bench-httpfw:
	./scripts/bench-httpfw.sh

## bench-ingest: ingestd vs the net-package baseline under ingest-load,
## pinned cores (see docs/benchmarks.md).
bench-ingest: build
	cd bench && $(GO) build -o ../$(BIN)/ ./cmd/ingest-net
	./scripts/bench-ingest.sh

## bench-quic: ingest over QUIC, ingestd vs plain quic-go (quic-plain), both
## stream styles, and ingestd over TCP, at 1,000 and 20,000 connections,
## pinned cores (see docs/quic.md#benchmark).
bench-quic: build
	cd bench && $(GO) build -o ../$(BIN)/ ./cmd/quic-plain
	./scripts/bench-quic.sh

clean:
	rm -rf $(BIN)

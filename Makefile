# gyre's build entry points. giouring reaches syscall.munmap through
# go:linkname, which Go >= 1.23 refuses unless the linker is told not to
# check: every build and test needs -checklinkname=0. It is set here once,
# through GOFLAGS, so plain `go` commands run by these targets inherit it.
export GOFLAGS := -ldflags=-checklinkname=0

GO        ?= go
PKGS      := ./...
BIN       := bin
STATICCHECK_VERSION := v0.8.2

.PHONY: all build test test-short lint run bench bench-http bench-ingest bench-quic clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## test: the whole suite with the race detector (what CI runs), a short
## fuzz run of the ingest frame decoder over its kept corpus, and the
## benchmark module's own unit tests.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 14m $(PKGS)
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime 15s ./ingest/
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...

## test-short: the suite without -race, for a quick local check.
test-short:
	$(GO) test -count=1 -short $(PKGS)

## lint: vet, gofmt and staticcheck (installed into ./bin if missing).
lint: $(BIN)/staticcheck
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(BIN)/staticcheck $(PKGS)

$(BIN)/staticcheck:
	GOBIN=$(CURDIR)/$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## run: the main job: the ingest node on embedded defaults (TCP 127.0.0.1:7400,
## file sink in ./data, metrics on 127.0.0.1:9400). Ctrl-C drains and exits.
run:
	$(GO) run ./cmd/ingestd --sink file --data-dir ./data

## bench-micro: hot-path micro-benchmarks with allocation counts.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./reactor/ ./bufring/ ./ingest/

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

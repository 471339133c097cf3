// Command nbhttp-hello is the lesismal/nbio peer of the HTTP-framework
// workload (scripts/bench-httpfw.sh): an nbhttp.Engine that parses on its
// event loop and runs an ordinary net/http Handler, which answers every
// request with 200 "Hello, World!" (text/plain). nbio's defaults apart
// from the loop count: one listener and -pollers event loops (1: the
// server is pinned to one core), handlers on nbio's default executor.
// It logs msg=listening once it accepts connections and exits on SIGINT
// or SIGTERM. GOMAXPROCS is Go's default (the CPUs the process may run
// on, so one under taskset -c N).
//
//	nbhttp-hello -addr 127.0.0.1:8080 -pollers 1
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
)

var (
	hello         = []byte("Hello, World!")
	contentLength = strconv.Itoa(len(hello))
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "TCP address to listen on (HOST:PORT)")
	pollers := flag.Int("pollers", 1, "nbio event loops (NPoller)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logging.SetLevel(logging.LevelError)

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// net/http computes Content-Length for a short body written at
		// once; nbhttp answers chunked instead unless it is set, so set it
		// (the same response bytes as the other servers).
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Header()["Content-Length"] = []string{contentLength}
		_, _ = w.Write(hello)
	})
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:   "tcp",
		Addrs:     []string{*addr},
		NListener: 1,
		NPoller:   *pollers,
		Handler:   mux,
	})
	if err := engine.Start(); err != nil {
		logger.Error("start", "err", err)
		os.Exit(1)
	}
	// nbhttp does not say when its listener is up; Start returns after
	// listening, so a dial confirms it.
	c, err := net.DialTimeout("tcp", *addr, 2*time.Second)
	if err != nil {
		logger.Error("listen check", "err", err)
		os.Exit(1)
	}
	c.Close()
	logger.Info("listening", "addr", *addr, "server", "nbhttp", "pollers", *pollers, "gomaxprocs", runtime.GOMAXPROCS(0))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = engine.Shutdown(sctx)
}

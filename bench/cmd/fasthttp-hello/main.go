// Command fasthttp-hello is the valyala/fasthttp peer of the
// HTTP-framework workload (scripts/bench-httpfw.sh): a fasthttp.Server
// with default settings whose handler answers every request with 200
// "Hello, World!" (text/plain). It logs msg=listening once it accepts
// connections and exits on SIGINT or SIGTERM. GOMAXPROCS is Go's default
// (the CPUs the process may run on, so one under taskset -c N).
//
//	fasthttp-hello -addr 127.0.0.1:8080
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/valyala/fasthttp"
)

var hello = []byte("Hello, World!")

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "TCP address to listen on (HOST:PORT)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp4", *addr)
	if err != nil {
		logger.Error("listen", "err", err)
		os.Exit(1)
	}
	srv := &fasthttp.Server{
		Name: "fasthttp",
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBody(hello)
		},
	}
	logger.Info("listening", "addr", ln.Addr().String(), "server", "fasthttp", "gomaxprocs", runtime.GOMAXPROCS(0))
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	if err := srv.Serve(ln); err != nil && ctx.Err() == nil {
		logger.Error("serve", "err", err)
		os.Exit(1)
	}
}

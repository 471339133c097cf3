// Command nethttp-hello is the net/http baseline of the HTTP-framework
// workload (scripts/bench-httpfw.sh): a plain http.Server whose handler
// answers every request with 200 "Hello, World!" (text/plain), as
// gyre-http, fasthttp-hello and nbhttp-hello do for GET /. It logs
// msg=listening once it accepts connections and exits on SIGINT or
// SIGTERM. GOMAXPROCS is Go's default (the CPUs the process may run on,
// so one under taskset -c N).
//
// With -tls it serves HTTPS with a fresh self-signed certificate (the
// net/http side of the TLS cost measurement; gyre-http -api gyrenet -tls
// is the other).
//
//	nethttp-hello -addr 127.0.0.1:8080 [-tls]
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/gyre-io/gyre/internal/selfsigned"
)

var hello = []byte("Hello, World!")

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "TCP address to listen on (HOST:PORT)")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a fresh self-signed certificate")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		logger.Error("listen", "err", err)
		os.Exit(1)
	}
	if *useTLS {
		cert, err := selfsigned.Cert("nethttp-hello (self-signed, benchmarks only)")
		if err != nil {
			logger.Error("certificate", "err", err)
			os.Exit(1)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		_, _ = w.Write(hello)
	})}
	logger.Info("listening", "addr", ln.Addr().String(), "server", "net/http", "tls", *useTLS, "gomaxprocs", runtime.GOMAXPROCS(0))
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		logger.Error("serve", "err", err)
		os.Exit(1)
	}
}

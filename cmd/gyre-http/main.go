// Command gyre-http is an example HTTP/1.1 server on gyre's reactors: a
// small router served through the native inline API (-api native) or as a
// net/http ServeMux (-api nethttp), both from package http1, or by
// net/http's own http.Server over a gyrenet listener (-api gyrenet), which
// alone serves HTTPS (-tls, with a self-signed certificate: a benchmark
// and development setting).
//
//	gyre-http -addr 127.0.0.1:8080 -api native|nethttp|gyrenet [-tls] -engine auto|io_uring|epoll|net -reactors N
//
// Routes, the same in both modes:
//
//	GET /         200 "Hello, World!" (text/plain)
//	POST /echo    the request body streamed back (also PUT)
//	GET /headers  the request's header fields, one per line
//
// Other tools (benchmarks) rely on the flag names -addr, -api and
// -engine. SIGINT or SIGTERM drains the server (-grace bounds it).
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/gyrenet"
	"github.com/gyre-io/gyre/http1"
	"github.com/gyre-io/gyre/internal/selfsigned"
	"github.com/gyre-io/gyre/reactor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr, nil))
}

// run parses args, serves until ctx ends, and returns the exit code. If
// started is not nil, it receives the server once it is accepting.
func run(ctx context.Context, args []string, stderr io.Writer, started chan<- net.Addr) int {
	fs := flag.NewFlagSet("gyre-http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "TCP address to listen on (HOST:PORT)")
	api := fs.String("api", "native", "native: handlers inline on the reactors; nethttp: a net/http ServeMux on a goroutine pool; gyrenet: net/http's http.Server over a gyrenet listener")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a fresh self-signed certificate (-api gyrenet only)")
	engineName := fs.String("engine", "auto", "the reactors' engine: auto, io_uring, epoll or net")
	reactors := fs.Int("reactors", 1, "number of reactors")
	grace := fs.Duration("grace", 5*time.Second, "shutdown grace period on SIGINT/SIGTERM")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit")
	keepProcs := fs.Bool("keep-gomaxprocs", false, "leave GOMAXPROCS as Go set it (reactor.Config.KeepGOMAXPROCS)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gyre-http: unexpected arguments %q\n", fs.Args())
		return 2
	}
	engine, err := reactor.ParseEngine(*engineName)
	if err != nil {
		fmt.Fprintf(stderr, "gyre-http: -engine: %v\n", err)
		return 2
	}
	if *reactors < 1 || *reactors > 1024 {
		fmt.Fprintf(stderr, "gyre-http: -reactors must be between 1 and 1024\n")
		return 2
	}
	var handler http1.Handler
	switch *api {
	case "native":
		handler = native{}
	case "nethttp":
		handler = &http1.NetHTTP{Handler: newMux(), ErrorLog: log.New(stderr, "gyre-http: ", log.LstdFlags)}
	case "gyrenet":
	default:
		fmt.Fprintf(stderr, "gyre-http: -api must be native, nethttp or gyrenet, not %q\n", *api)
		return 2
	}
	if *useTLS && *api != "gyrenet" {
		fmt.Fprintf(stderr, "gyre-http: -tls needs -api gyrenet (package http1 has no TLS of its own)\n")
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "gyre-http: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "gyre-http: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if *api == "gyrenet" {
		rcfg := gyrenet.Config{Engine: engine, Reactors: *reactors, Logger: logger, KeepGOMAXPROCS: *keepProcs}
		return serveGyrenet(ctx, *addr, rcfg, *useTLS, *grace, logger, started)
	}
	s := &http1.Server{Handler: handler, Config: http1.Config{
		Reactor: reactor.Config{Engine: engine, Reactors: *reactors, Logger: logger, KeepGOMAXPROCS: *keepProcs},
		Logger:  logger,
	}}
	if err := s.Start(*addr); err != nil {
		logger.Error("gyre-http failed to start", "err", err)
		return 1
	}
	logger.Info("listening", "addr", s.Addr().String(), "api", *api, "engine", s.Group().Engine().String(), "reactors", *reactors)
	if started != nil {
		started <- s.Addr()
	}
	select {
	case <-ctx.Done():
	case <-s.Group().Done():
		if err := s.Wait(); err != http1.ErrServerClosed {
			logger.Error("gyre-http stopped", "err", err)
			return 1
		}
		return 0
	}
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		logger.Warn("shutdown grace period expired; connections closed", "err", err)
	}
	return 0
}

// serveGyrenet serves newMux with net/http's http.Server on a gyrenet
// listener, over TLS when useTLS is set: "HTTPS on gyre" as a program
// would run it, for the benchmarks to measure against net/http with TLS.
func serveGyrenet(ctx context.Context, addr string, cfg gyrenet.Config, useTLS bool, grace time.Duration, logger *slog.Logger, started chan<- net.Addr) int {
	gl, err := gyrenet.Listen("tcp", addr, cfg)
	if err != nil {
		logger.Error("gyre-http failed to start", "err", err)
		return 1
	}
	var ln net.Listener = gl
	if useTLS {
		cert, err := selfsigned.Cert("gyre-http (self-signed, benchmarks only)")
		if err != nil {
			_ = gl.Close()
			logger.Error("gyre-http failed to start", "err", err)
			return 1
		}
		ln = tls.NewListener(gl, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	srv := &http.Server{Handler: newMux(), ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("listening", "addr", gl.Addr().String(), "api", "gyrenet", "tls", useTLS, "engine", gl.Engine().String(), "reactors", cfg.Reactors)
	if started != nil {
		started <- gl.Addr()
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		logger.Error("gyre-http stopped", "err", err)
		_ = gl.Shutdown(context.Background())
		return 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("shutdown grace period expired; connections closed", "err", err)
	}
	<-served
	_ = gl.Shutdown(sctx) // stops the reactors
	return 0
}

// native is the router on the inline API: it runs on the reactor and
// allocates nothing per request.
type native struct{}

func (native) ServeHTTP1(w *http1.Response, r *http1.Request) {
	switch string(r.Path()) {
	case "/":
		if !getOrHead(w, r) {
			return
		}
		w.AddHeader("Content-Type", "text/plain")
		_, _ = w.WriteString("Hello, World!")
	case "/echo":
		if m := r.Method(); m != "POST" && m != "PUT" {
			notAllowed(w, "POST, PUT")
			return
		}
		w.AddHeader("Content-Type", "application/octet-stream")
		r.ReadBody(echo) // the response streams as the body arrives
	case "/headers":
		if !getOrHead(w, r) {
			return
		}
		w.AddHeader("Content-Type", "text/plain; charset=utf-8")
		for i := 0; i < r.NumHeaders(); i++ {
			k, v := r.HeaderAt(i)
			_, _ = w.Write(k)
			_, _ = w.WriteString(": ")
			_, _ = w.Write(v)
			_, _ = w.WriteString("\n")
		}
	default:
		w.SetStatus(404)
		w.AddHeader("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.WriteString("404 page not found\n")
	}
}

func getOrHead(w *http1.Response, r *http1.Request) bool {
	if m := r.Method(); m == "GET" || m == "HEAD" {
		return true
	}
	notAllowed(w, "GET, HEAD")
	return false
}

func notAllowed(w *http1.Response, allow string) {
	w.SetStatus(405)
	w.AddHeader("Allow", allow)
	w.AddHeader("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.WriteString("405 method not allowed\n")
}

// echo writes each piece of the body back as it arrives. A write the
// output cannot take ends the connection: the reactor stops reading when
// output is over its high-water mark, so that only happens to a client
// that sends far more than it reads.
var echo = http1.BodyFunc(func(w *http1.Response, r *http1.Request, chunk []byte, err error) {
	if len(chunk) > 0 {
		if _, werr := w.Write(chunk); werr != nil {
			_ = r.Conn().Close()
		}
	}
})

// newMux is the same router for -api nethttp.
func newMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "Hello, World!")
	})
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, r.Body)
	}
	m.HandleFunc("POST /echo", echo)
	m.HandleFunc("PUT /echo", echo)
	m.HandleFunc("GET /headers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.Host != "" {
			fmt.Fprintf(w, "Host: %s\n", r.Host)
		}
		for k, vv := range r.Header {
			for _, v := range vv {
				fmt.Fprintf(w, "%s: %s\n", k, v)
			}
		}
	})
	return m
}

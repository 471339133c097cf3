// Command gyre-echo is the example server used for comparisons: the same
// workload on gyre's reactors (-backend gyre, on the engine -engine names)
// or on a goroutine-per-connection net server (-backend net), with the
// same code around both.
//
//	gyre-echo -addr 127.0.0.1:7400 -mode echo|http -backend gyre|net -engine auto|io_uring|epoll|net -reactors N
//
// -mode echo sends every byte back; -mode http answers each request (no
// body) with a fixed "HTTP/1.1 200" response whose body is "Hello, World!".
// Other tools rely on these flag names.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/reactor"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gyre-echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7400", "TCP address to listen on")
	mode := fs.String("mode", "echo", "echo: send bytes back; http: fixed HTTP/1.1 200 per request")
	backend := fs.String("backend", "gyre", "gyre: gyre reactors (\"uring\" is accepted too); net: goroutine per connection (baseline)")
	engineName := fs.String("engine", "auto", "gyre backend: the reactors' engine: auto, io_uring, epoll or net")
	reactors := fs.Int("reactors", 1, "number of reactors (gyre backend)")
	grace := fs.Duration("grace", 5*time.Second, "shutdown grace period on SIGINT/SIGTERM")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit")
	keepProcs := fs.Bool("keep-gomaxprocs", false, "gyre backend: leave GOMAXPROCS as Go set it (reactor.Config.KeepGOMAXPROCS; for A/B runs)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *mode != "echo" && *mode != "http" {
		fmt.Fprintf(stderr, "gyre-echo: -mode must be echo or http, not %q\n", *mode)
		return 2
	}
	engine, err := reactor.ParseEngine(*engineName)
	if err != nil {
		fmt.Fprintf(stderr, "gyre-echo: -engine: %v\n", err)
		return 2
	}
	if *reactors < 1 || *reactors > 1024 {
		fmt.Fprintf(stderr, "gyre-echo: -reactors must be between 1 and 1024\n")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "gyre-echo: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "gyre-echo: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch *backend {
	case "gyre", "uring":
		err = serveGyre(ctx, log, *addr, *mode, reactor.Config{Engine: engine, Reactors: *reactors, Logger: log, KeepGOMAXPROCS: *keepProcs}, *grace)
	case "net":
		err = serveNet(ctx, log, *addr, *mode, *grace)
	default:
		fmt.Fprintf(stderr, "gyre-echo: -backend must be gyre or net, not %q\n", *backend)
		return 2
	}
	if err != nil {
		log.Error("gyre-echo failed", "err", err)
		return 1
	}
	return 0
}

// echoHandler sends every byte back.
type echoHandler struct{ reactor.BaseHandler }

func (echoHandler) OnData(c *reactor.Conn, b []byte) int {
	if _, err := c.Write(b); err != nil {
		return 0 // output full: keep the bytes, reading pauses
	}
	return len(b)
}

// httpHandler answers each complete request with the fixed response.
type httpHandler struct{ reactor.BaseHandler }

func (httpHandler) OnData(c *reactor.Conn, b []byte) int {
	n, consumed := completeRequests(b)
	for i := 0; i < n; i++ {
		if _, err := c.Write(httpResponse); err != nil {
			c.Abort()
			return len(b)
		}
	}
	return consumed
}

func serveGyre(ctx context.Context, log *slog.Logger, addr, mode string, cfg reactor.Config, grace time.Duration) error {
	var h reactor.Handler = echoHandler{}
	if mode == "http" {
		h = httpHandler{}
	}
	g, err := reactor.NewGroup(cfg, h)
	if err != nil {
		return err
	}
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{addr}, Logger: log}, g)
	if err != nil {
		_ = g.Close()
		return err
	}
	log.Info("listening", "addr", a.Addrs()[0].String(), "backend", "gyre", "engine", g.Engine().String(), "mode", mode, "reactors", cfg.Reactors)
	select {
	case <-ctx.Done():
	case <-g.Done():
		return g.Wait()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		log.Warn("shutdown grace period expired; connections closed", "err", err)
	}
	return nil
}

// serveNet is the baseline: goroutine per connection, one reused read
// buffer and one reused write buffer each, no per-request allocation.
func serveNet(ctx context.Context, log *slog.Logger, addr, mode string, grace time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Info("listening", "addr", ln.Addr().String(), "backend", "net", "mode", mode, "gomaxprocs", runtime.GOMAXPROCS(0))
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			log.Warn("accept", "err", err)
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if mode == "http" {
			go serveNetHTTP(c)
		} else {
			go serveNetEcho(c)
		}
	}
}

func serveNetEcho(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func serveNetHTTP(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	out := make([]byte, 0, 16<<10)
	have := 0
	for {
		n, err := c.Read(buf[have:])
		have += n
		reqs, consumed := completeRequests(buf[:have])
		out = out[:0]
		for i := 0; i < reqs; i++ {
			out = append(out, httpResponse...)
		}
		if len(out) > 0 {
			if _, werr := c.Write(out); werr != nil {
				return
			}
		}
		have = copy(buf, buf[consumed:have])
		if err != nil || have == len(buf) {
			return
		}
	}
}

// Command gnet-echo is the gnet v2 contender of the benchmark harness: the
// same two workloads as cmd/gyre-echo, on gnet's epoll event loops.
//
//	gnet-echo -addr 127.0.0.1:7400 -mode echo|http -loops N
//
// -mode echo sends every byte back; -mode http answers each complete
// request (no body) with the same fixed "HTTP/1.1 200" response as
// gyre-echo, counted by the same completeRequests. It logs a line with
// msg=listening once it accepts connections, as gyre-echo does, and stops
// on SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gnet-echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7400", "TCP address to listen on")
	mode := fs.String("mode", "echo", "echo: send bytes back; http: fixed HTTP/1.1 200 per request")
	loops := fs.Int("loops", 1, "number of gnet event loops")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *mode != "echo" && *mode != "http" {
		fmt.Fprintf(stderr, "gnet-echo: -mode must be echo or http, not %q\n", *mode)
		return 2
	}
	if *loops < 1 || *loops > 1024 {
		fmt.Fprintf(stderr, "gnet-echo: -loops must be between 1 and 1024\n")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	h := &handler{mode: *mode, log: log, addr: *addr, loops: *loops, eng: make(chan gnet.Engine, 1)}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		eng := h.engine()
		if eng == nil {
			os.Exit(0) // signalled before the engine booted
		}
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = eng.Stop(sctx)
	}()
	err := gnet.Run(h, "tcp://"+*addr,
		gnet.WithMulticore(*loops > 1),
		gnet.WithNumEventLoop(*loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogLevel(logging.WarnLevel),
	)
	if err != nil {
		log.Error("gnet-echo failed", "err", err)
		return 1
	}
	return 0
}

type handler struct {
	gnet.BuiltinEventEngine
	mode  string
	log   *slog.Logger
	addr  string
	loops int
	eng   chan gnet.Engine // capacity 1: OnBoot sends the engine once
}

func (h *handler) engine() *gnet.Engine {
	select {
	case e := <-h.eng:
		return &e
	default:
		return nil
	}
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng <- eng
	h.log.Info("listening", "addr", h.addr, "backend", "gnet", "mode", h.mode, "loops", h.loops, "gomaxprocs", runtime.GOMAXPROCS(0))
	return gnet.None
}

// responses holds read-only references to the fixed response, so that n
// pipelined requests are answered with one writev and no copy here.
var responses = func() [][]byte {
	r := make([][]byte, 64)
	for i := range r {
		r[i] = httpResponse
	}
	return r
}()

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	if h.mode == "echo" {
		b, _ := c.Next(-1) // valid until the handler returns; Write copies what it cannot send
		if len(b) > 0 {
			if _, err := c.Write(b); err != nil {
				return gnet.Close
			}
		}
		return gnet.None
	}
	b, _ := c.Peek(-1)
	n, consumed := completeRequests(b)
	if consumed > 0 {
		_, _ = c.Discard(consumed)
	}
	for n > 0 {
		k := min(n, len(responses))
		var err error
		if k == 1 {
			_, err = c.Write(httpResponse)
		} else {
			_, err = c.Writev(responses[:k])
		}
		if err != nil {
			return gnet.Close
		}
		n -= k
	}
	if c.InboundBuffered() > 16<<10 {
		return gnet.Close // a request larger than gyre-echo's net backend accepts
	}
	return gnet.None
}

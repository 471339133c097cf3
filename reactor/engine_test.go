package reactor_test

import (
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/syncbuf"
	"github.com/gyre-io/gyre/internal/uring"
	"github.com/gyre-io/gyre/reactor"
)

// engines lists the engines this machine can run, io_uring first when
// the kernel allows it.
func engines(t testing.TB) []reactor.Engine {
	t.Helper()
	out := []reactor.Engine{reactor.EngineEpoll, reactor.EngineNet}
	if err := uring.Probe(); err == nil {
		out = append([]reactor.Engine{reactor.EngineIOUring}, out...)
	} else {
		t.Logf("io_uring not available here: %v", err)
	}
	return out
}

func TestParseEngine(t *testing.T) {
	for _, e := range []reactor.Engine{reactor.EngineAuto, reactor.EngineIOUring, reactor.EngineEpoll, reactor.EngineNet} {
		got, err := reactor.ParseEngine(e.String())
		if err != nil || got != e {
			t.Errorf("ParseEngine(%q) = %v, %v; want %v", e.String(), got, err, e)
		}
	}
	if got, err := reactor.ParseEngine("uring"); err != nil || got != reactor.EngineIOUring {
		t.Errorf("ParseEngine(uring) = %v, %v", got, err)
	}
	_, err := reactor.ParseEngine("kqueue")
	if err == nil || !strings.Contains(err.Error(), "kqueue") || !strings.Contains(err.Error(), "epoll") {
		t.Errorf("ParseEngine(kqueue) error = %v, want one naming the input and the choices", err)
	}
}

// TestEveryEngineEchoes: the same handler, byte-exact, on every engine
// this machine has, with messages larger than a receive buffer and
// pipelined connections.
func TestEveryEngineEchoes(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.String(), func(t *testing.T) {
			s := start(t, reactor.Config{Engine: e, Reactors: 2, Buffers: bufringSmall}, echo{})
			if got := s.g.Engine(); got != e {
				t.Fatalf("Group.Engine() = %v, want %v", got, e)
			}
			for _, r := range s.g.Reactors() {
				if r.Engine() != e {
					t.Errorf("reactor %d runs %v, want %v", r.ID(), r.Engine(), e)
				}
			}
			echoConns(t, s, 20, 10, 32<<10)
			// The clients have their bytes; the server counts a send when
			// its completion is handled, and a close a moment after the
			// client's: poll, with a deadline, until it has caught up.
			var st reactor.Stats
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if st = s.g.Stats(); st.Conns == 0 {
					break
				}
			}
			if st.Accepted != 20 || st.Conns != 0 || st.BytesIn == 0 || st.BytesIn != st.BytesOut {
				t.Errorf("stats %+v: want 20 accepted and closed, every byte received sent back", st)
			}
		})
	}
}

// TestAutoFallsBackWhenIOUringRefused: for each way a kernel or a seccomp
// profile refuses io_uring, EngineAuto serves on epoll, with one warning
// that names the cause and the fix, and connections work.
func TestAutoFallsBackWhenIOUringRefused(t *testing.T) {
	for _, tc := range []struct {
		stage uring.Stage
		errno syscall.Errno
		why   string
	}{
		{uring.StageSetup, syscall.EPERM, "seccomp or kernel.io_uring_disabled"},
		{uring.StageSetup, syscall.ENOSYS, "no io_uring in the kernel"},
		{uring.StageSetup, syscall.EOPNOTSUPP, "a sandbox filter"},
		{uring.StageSetup, syscall.EINVAL, "a setup flag the kernel lacks"},
		{uring.StageSetup, syscall.ENOMEM, "RLIMIT_MEMLOCK"},
		{uring.StageProbe, syscall.EINVAL, "an opcode probe the kernel lacks"},
		{uring.StageBufRing, syscall.EINVAL, "no provided-buffer rings"},
		{uring.StageBufRing, syscall.ENOMEM, "no memory for the buffer ring"},
	} {
		t.Run(tc.errno.Error()+"/"+tc.why, func(t *testing.T) {
			var logs syncbuf.Buffer
			cfg := reactor.Config{Reactors: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			cfg = reactor.WithProbeRefusal(cfg, &uring.Injection{Stage: tc.stage, Errno: tc.errno})
			s := start(t, cfg, echo{})
			if got := s.g.Engine(); got != reactor.EngineEpoll {
				t.Fatalf("Engine() = %v after io_uring was refused with %v, want epoll", got, tc.errno)
			}
			echoConns(t, s, 2, 3, 8<<10)
			out := logs.String()
			t.Log(out)
			if n := strings.Count(out, "io_uring refused"); n != 1 {
				t.Errorf("%d fallback warnings, want 1:\n%s", n, out)
			}
			for _, want := range []string{"level=WARN", "engine=epoll", tc.errno.Error(), "fix="} {
				if !strings.Contains(out, want) {
					t.Errorf("warning lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestExplicitIOUringRefusalIsAnError: asked for by name, io_uring is not
// replaced: the caller gets the refusal (see also TestRingRefused).
func TestExplicitIOUringRefusalIsAnError(t *testing.T) {
	cfg := reactor.WithRingFlags(reactor.Config{Engine: reactor.EngineIOUring, Reactors: 1}, 1<<28)
	g, err := reactor.NewGroup(cfg, echo{})
	if err == nil {
		_ = g.Close()
		t.Fatal("NewGroup succeeded")
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("error %v does not wrap errors.ErrUnsupported", err)
	}
}

func TestUnknownEngineRejected(t *testing.T) {
	g, err := reactor.NewGroup(reactor.Config{Engine: reactor.Engine(42), Reactors: 1}, echo{})
	if err == nil {
		_ = g.Close()
		t.Fatal("NewGroup accepted engine 42")
	}
}

package main

// ingestd with few file descriptors: the test process starts it under a
// low RLIMIT_NOFILE (soft and hard, testenv.CommandWithNOFILE) and floods
// it with TCP connections, so only the child runs short of descriptors.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/internal/testenv"
)

// fdNOFILE is the descriptor limit the tests give ingestd: with the
// default --max-conns it takes fdNOFILE - ingest.ConnsReserve clients.
const fdNOFILE = 300

// TestDescriptorLimitMaxConns: under a descriptor limit of 300 the default
// --max-conns is 300 - 256 = 44. Of 400 connections, the 356 past it are
// closed by the server at once (each client's read ends with EOF or a
// reset within seconds, none waits in the backlog) and counted under
// refused{reason="max_conns"}; /metrics and /healthz answer throughout;
// once the clients leave, a new one sends records and gets them ACKed
// and stored.
func TestDescriptorLimitMaxConns(t *testing.T) {
	const clients = 400
	maxConns := fdNOFILE - ingest.ConnsReserve
	dir := t.TempDir()
	d := startServeNOFILE(t, fdNOFILE, dir)
	if code, body := fdGet(t, d.metrics, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz at start: %d %q", code, body)
	}

	w := fdWatchHTTP(t, d.metrics)
	f := fdNewFlood(t)
	f.dial(t, d.tcp, clients)
	wantRefused := clients - maxConns
	fdWait(t, 10*time.Second, fmt.Sprintf("%d refused connections closed by the server", wantRefused), func() bool {
		return f.serverClosed() >= wantRefused
	})
	fdWaitMetric(t, d.metrics, "gyre_ingest_connections_active", float64(maxConns))
	fdWaitMetric(t, d.metrics, `gyre_ingest_connections_refused_total{reason="max_conns"}`, float64(wantRefused))
	_, text := fdGet(t, d.metrics, "/metrics")
	for name, want := range map[string]float64{
		"gyre_ingest_connections_accepted_total": float64(maxConns),
		"gyre_ingest_accept_errors_total":        0,
	} {
		if v, ok := metricValue(text, name); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	closed, slowest, odd := f.results()
	if closed != wantRefused || len(odd) > 0 {
		t.Fatalf("%d connections closed by the server, want %d; other read results: %v", closed, wantRefused, odd)
	}
	if slowest > 3*time.Second {
		t.Errorf("a refused connection was closed %v after it was dialled: left waiting", slowest)
	}
	if code, body := fdGet(t, d.metrics, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz with %d connections open: %d %q", maxConns, code, body)
	}
	if !strings.Contains(d.stderr.String(), "refusing TCP connections") {
		t.Errorf("no log line about refused connections; stderr:\n%s", d.stderr.String())
	}
	n := w.stop(t)
	t.Logf("%d refused connections closed, the slowest %v after its dial; /metrics and /healthz answered %d times meanwhile",
		closed, slowest.Round(time.Millisecond), n)

	f.closeAll()
	fdWaitMetric(t, d.metrics, "gyre_ingest_connections_active", 0)
	sendAndAck(t, d.tcp, 1, 100)
	d.stop(10 * time.Second)
	fdCheckStored(t, dir, map[int]uint64{1: 100})
}

// TestOutOfDescriptorsMetricsAnswer: with --max-conns -1 and a descriptor
// limit of 300, clients take every descriptor (accepts fail with EMFILE,
// the rest wait in the backlog). /metrics and /healthz still answer, on
// the metrics listener's spare descriptor, while the process stays out of
// descriptors, and show the accept errors; a connection opened before
// keeps getting ACKs (the sink needs no new descriptor for that). Once the
// flood leaves, a new client's records are ACKed and everything ACKed is
// in the log.
func TestOutOfDescriptorsMetricsAnswer(t *testing.T) {
	dir := t.TempDir()
	d := startServeNOFILE(t, fdNOFILE, dir, "--max-conns", "-1")
	pid := d.cmd.Process.Pid

	keep, err := net.DialTimeout("tcp", d.tcp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	_ = keep.SetDeadline(time.Now().Add(25 * time.Second))
	fdSendOn(t, keep, 1, 1, 10)

	// Flood until accepts fail, watching ingestd's log and descriptor
	// table rather than /metrics (see the back-off below).
	const acceptFailed = `msg="accept failed; backing off"`
	base := fdOpenCount(t, pid)
	f := fdNewFlood(t)
	for !strings.Contains(d.stderr.String(), acceptFailed) {
		if f.count() >= 3*fdNOFILE {
			t.Fatalf("no accept error after %d connections; %d descriptors open", f.count(), fdOpenCount(t, pid))
		}
		f.dial(t, d.tcp, 25)
		fdWait(t, 5*time.Second, "the flood accepted or an accept error", func() bool {
			return fdOpenCount(t, pid) >= base+f.count() || strings.Contains(d.stderr.String(), acceptFailed)
		})
	}
	// Out of descriptors: every one is taken.
	fdWait(t, 5*time.Second, fmt.Sprintf("ingestd holding all %d descriptors", fdNOFILE), func() bool {
		return fdOpenCount(t, pid) == fdNOFILE
	})
	// The spare is best-effort: a descriptor that another thread takes in
	// the microseconds between the spare's close and the accept, or
	// between a served connection's close and the spare's re-opening, is
	// lost to it (see withSpareDescriptor). Here that thread is the TCP
	// acceptor retrying, every 5 ms doubling to 1 s: requests sent while
	// its retries were frequent lost the spare in about 3% of runs. So
	// the requests start right after a retry logged with the back-off at
	// its 1 s cap, and are done long before the next one.
	d.waitLog("backoff=1s", 5*time.Second)
	for i := 0; i < 10; i++ {
		code, text, err := fdTryGet(d.metrics, "/metrics")
		if v, _ := metricValue(text, "gyre_ingest_accept_errors_total"); err != nil || code != 200 || v == 0 {
			t.Fatalf("/metrics out of descriptors: %d, %v, gyre_ingest_accept_errors_total %v; ingestd's descriptors: %s",
				code, err, v, fdSummary(t, pid))
		}
		if code, body, err := fdTryGet(d.metrics, "/healthz"); err != nil || code != 200 || body != "ok\n" {
			t.Fatalf("/healthz out of descriptors: %d %q, %v; ingestd's descriptors: %s", code, body, err, fdSummary(t, pid))
		}
	}
	// Still out of descriptors once the last request's connection is
	// closed and the spare re-opened: the answers were served on the spare.
	fdWait(t, 5*time.Second, fmt.Sprintf("ingestd holding all %d descriptors after the requests", fdNOFILE), func() bool {
		return fdOpenCount(t, pid) == fdNOFILE
	})
	_, text := fdGet(t, d.metrics, "/metrics")
	active, _ := metricValue(text, "gyre_ingest_connections_active")
	acceptErrs, _ := metricValue(text, "gyre_ingest_accept_errors_total")
	fdSendOn(t, keep, 1, 11, 30)
	closed, _, odd := f.results()
	if closed != 0 || len(odd) > 0 {
		t.Errorf("%d flood connections closed by the server, other read results %v; want none", closed, odd)
	}
	t.Logf("out of descriptors with %d flood connections (%v active, %v accept errors); /metrics and /healthz answered",
		f.count(), active, acceptErrs)

	f.closeAll()
	fdWaitMetric(t, d.metrics, "gyre_ingest_connections_active", 1) // keep
	fdWait(t, 5*time.Second, "descriptors given back", func() bool { return fdOpenCount(t, pid) < fdNOFILE/2 })
	sendAndAck(t, d.tcp, 2, 100)
	if code, body := fdGet(t, d.metrics, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz after the flood: %d %q", code, body)
	}
	keep.Close()
	d.stop(10 * time.Second)
	fdCheckStored(t, dir, map[int]uint64{1: 30, 2: 100})
}

// TestSpareListener drives spareListener over a real TCP listener with
// scripted accept results. An accept that fails with EMFILE keeps the
// spare until a connection is pending (accept(2) fails before it looks at
// the backlog), then gives it up and accepts; with no spare (it could not
// be re-opened) the error goes to the caller; closing a connection
// re-arms the spare; other errors leave it alone; Close ends a wait and
// closes the spare for good. (TestOutOfDescriptorsMetricsAnswer runs
// ingestd out of real descriptors.)
func TestSpareListener(t *testing.T) {
	real, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", real.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	aborted := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}

	inner := &scriptedListener{TCPListener: real.(*net.TCPListener)}
	l := withSpareDescriptor(inner).(*spareListener)
	var full atomic.Bool // out of descriptors: the spare cannot be re-opened
	l.open = func() (int, error) {
		if full.Load() {
			return -1, syscall.EMFILE
		}
		return openSpare()
	}
	polls := make(chan bool, 100) // what each wait for a pending connection found
	l.poll = func(fd uintptr, _ time.Duration) (bool, error) {
		ready, err := pollReadable(fd, 10*time.Millisecond)
		polls <- ready
		return ready, err
	}
	spare := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.spare
	}
	if spare() < 0 {
		t.Fatal("no spare descriptor after withSpareDescriptor")
	}
	accepted := make(chan error, 1)
	var got net.Conn
	acceptAsync := func() {
		go func() {
			c, err := l.Accept()
			got = c
			accepted <- err
		}()
	}
	noPending := func() {
		t.Helper()
		if <-polls {
			t.Fatal("a connection was pending before any was dialled")
		}
	}

	// Out of descriptors, nothing pending: the spare is kept while waiting;
	// once a connection is pending it is given up and the accept retried.
	inner.script(
		func() (net.Conn, error) { full.Store(true); return nil, emfile },
		func() (net.Conn, error) {
			if spare() >= 0 {
				t.Error("accept retried with the spare still open")
			}
			return real.Accept()
		})
	acceptAsync()
	noPending()
	if s := spare(); s < 0 || inner.calls.Load() != 1 {
		t.Fatalf("waiting for a pending connection: spare %d, %d inner accepts; want the spare kept, 1 accept", s, inner.calls.Load())
	}
	dial()
	if err := <-accepted; err != nil || inner.calls.Load() != 2 {
		t.Fatalf("Accept = %v after %d inner accepts, want a connection after 2", err, inner.calls.Load())
	}
	for len(polls) > 0 {
		<-polls
	}
	sc, ok := got.(*spareConn)
	if !ok {
		t.Fatalf("Accept returned a %T, want a *spareConn", got)
	}
	// Still out: no spare to use, the error is the caller's (net/http backs
	// off and retries).
	inner.script(func() (net.Conn, error) { return nil, emfile })
	if _, err := l.Accept(); !errors.Is(err, syscall.EMFILE) || inner.calls.Load() != 1 {
		t.Fatalf("Accept without a spare = %v after %d inner accepts, want EMFILE after 1", err, inner.calls.Load())
	}
	// Descriptors come back when the connection closes: the spare is
	// re-armed then, not at the next Accept.
	full.Store(false)
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	if spare() < 0 {
		t.Fatal("closing a connection did not re-arm the spare")
	}
	// Other accept errors pass through and keep the spare.
	held := spare()
	inner.script(func() (net.Conn, error) { return nil, aborted })
	if _, err := l.Accept(); !errors.Is(err, syscall.ECONNABORTED) || inner.calls.Load() != 1 || spare() != held {
		t.Fatalf("Accept = %v after %d inner accepts, spare %d (was %d); want ECONNABORTED after 1, spare kept",
			err, inner.calls.Load(), spare(), held)
	}
	// Close ends a wait for a pending connection.
	inner.script(func() (net.Conn, error) { return nil, emfile })
	acceptAsync()
	noPending()
	if err := l.Close(); err != nil || !inner.closed.Load() {
		t.Fatalf("Close = %v, inner closed %v", err, inner.closed.Load())
	}
	select {
	case err := <-accepted:
		if err == nil {
			t.Fatal("Accept waiting when the listener was closed returned a connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waiting 5 s after Close")
	}
	if spare() >= 0 {
		t.Fatal("Close left the spare open")
	}
	l.rearm()
	if spare() >= 0 {
		t.Fatal("the spare was re-opened after Close")
	}
}

// scriptedListener is a TCP listener whose Accept returns what its script
// says, one step a call; the rest (its descriptor, deadlines, Close) is
// the real listener's.
type scriptedListener struct {
	*net.TCPListener
	steps  []func() (net.Conn, error)
	calls  atomic.Int32
	closed atomic.Bool
}

// script sets the steps of the Accepts to come (not while one runs).
func (s *scriptedListener) script(steps ...func() (net.Conn, error)) {
	s.steps = steps
	s.calls.Store(0)
}

func (s *scriptedListener) Accept() (net.Conn, error) {
	n := int(s.calls.Add(1))
	if n > len(s.steps) {
		return nil, errors.New("scriptedListener: Accept past the script")
	}
	return s.steps[n-1]()
}

func (s *scriptedListener) Close() error {
	s.closed.Store(true)
	return s.TCPListener.Close()
}

// startServeNOFILE is startServe with ingestd under an RLIMIT_NOFILE of
// nofile, soft and hard (the test binary lowers it and execs ingestd, so
// the process id is ingestd's). It checks the limit took.
func startServeNOFILE(t *testing.T, nofile int, dir string, extra ...string) *daemon {
	t.Helper()
	args := append([]string{"--quic", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
		"--reactors", "2", "--sink", "file", "--data-dir", dir}, extra...)
	d := startCommand(t, testenv.CommandWithNOFILE(t, nofile, ingestdBin, args...))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ingestd's stderr:\n%s", d.stderr.String())
		}
	})
	d.waitReady(true)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^Max open files\s+%d\s+%d\s`, nofile, nofile)).Match(limits) {
		t.Fatalf("ingestd's limits, want %d open files (soft and hard):\n%s", nofile, limits)
	}
	return d
}

// fdHTTP makes a new connection for every request: a kept-alive one would
// not need the metrics listener to accept.
var fdHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// fdGet returns the status and body of GET http://addr/path on a new
// connection.
func fdGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	code, body, err := fdTryGet(addr, path)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

func fdTryGet(addr, path string) (int, string, error) {
	resp, err := fdHTTP.Get("http://" + addr + path)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, string(b), nil
}

// fdWait polls cond until it holds; it fails the test after timeout.
func fdWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fdWaitMetric polls /metrics (new connections) until the sample name
// (labels included) is want.
func fdWaitMetric(t *testing.T, addr, name string, want float64) {
	t.Helper()
	var v float64
	var found bool
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, text := fdGet(t, addr, "/metrics")
		if v, found = metricValue(text, name); found && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present %v) after 10s, want %v", name, v, found, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fdOpenCount returns how many descriptors process pid has open.
func fdOpenCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// fdSummary counts the descriptors of process pid by what they are.
func fdSummary(t *testing.T, pid int) string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	kinds := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if k, _, ok := strings.Cut(target, ":"); ok {
			target = k // socket:[123] -> socket
		}
		if target != "socket" {
			target += " (" + e.Name() + ")"
		}
		kinds[target]++
	}
	return fmt.Sprintf("%d: %v", len(ents), kinds)
}

// fdWatch requests /metrics and /healthz in a loop, each on a new
// connection, until stopped, and records what failed.
type fdWatch struct {
	done     chan struct{}
	finished chan struct{}
	ok       int
	failures []string
}

func fdWatchHTTP(t *testing.T, addr string) *fdWatch {
	w := &fdWatch{done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		for {
			for _, path := range []string{"/metrics", "/healthz"} {
				code, _, err := fdTryGet(addr, path)
				switch {
				case err != nil:
					w.failures = append(w.failures, err.Error())
				case code != 200:
					w.failures = append(w.failures, fmt.Sprintf("GET %s: status %d", path, code))
				default:
					w.ok++
				}
			}
			select {
			case <-w.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { w.stopWatching() })
	return w
}

func (w *fdWatch) stopWatching() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	<-w.finished
}

// stop stops watching, fails t on any failed request, and returns how many
// succeeded.
func (w *fdWatch) stop(t *testing.T) int {
	t.Helper()
	w.stopWatching()
	if len(w.failures) > 0 {
		t.Errorf("%d of %d requests failed while watching, first: %s", len(w.failures), len(w.failures)+w.ok, w.failures[0])
	}
	if w.ok == 0 {
		t.Error("no request answered while watching")
	}
	return w.ok
}

// fdFlood is a crowd of idle TCP clients. Each has a reader that records
// when and how the server ended the connection.
type fdFlood struct {
	wg       sync.WaitGroup
	stopping atomic.Bool // closeAll ran: reads end because of us

	mu      sync.Mutex
	conns   []net.Conn
	closed  int           // connections the server closed (EOF or reset)
	slowest time.Duration // longest from dial to that close
	odd     []string      // reads that ended otherwise
}

func fdNewFlood(t *testing.T) *fdFlood {
	f := &fdFlood{}
	t.Cleanup(f.closeAll)
	return f
}

// dial opens n more connections to addr.
func (f *fdFlood) dial(t *testing.T, addr string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dialling flood connection %d: %v", f.count(), err)
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var b [1]byte
			n, err := c.Read(b[:])
			if f.stopping.Load() {
				return
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			switch {
			case n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
				f.closed++
				f.slowest = max(f.slowest, time.Since(start))
			default:
				f.odd = append(f.odd, fmt.Sprintf("read %d bytes, %v", n, err))
			}
		}()
	}
}

func (f *fdFlood) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

func (f *fdFlood) serverClosed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *fdFlood) results() (closed int, slowest time.Duration, odd []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed, f.slowest, append([]string(nil), f.odd...)
}

// closeAll closes every connection and waits for the readers.
func (f *fdFlood) closeAll() {
	f.stopping.Store(true)
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}

// fdSendOn sends seqs from..to of client on c and waits for the ACK of to.
func fdSendOn(t *testing.T, c net.Conn, client int, from, to uint64) {
	t.Helper()
	var out []byte
	var err error
	for seq := from; seq <= to; seq++ {
		if out, err = ingest.AppendData(out, seq, appendPayload(nil, client, seq)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(out); err != nil {
		t.Fatalf("sending seqs %d..%d: %v", from, to, err)
	}
	dec := ingest.NewReplyDecoder()
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		f, used, err := dec.Decode(buf)
		if err == nil {
			if f.Kind != ingest.KindAck {
				t.Fatalf("got %v seq %d, want ACKs", f.Kind, f.Seq)
			}
			if f.Seq == to {
				return
			}
			buf = buf[used:]
			continue
		}
		if !errors.Is(err, ingest.ErrNeedMore) {
			t.Fatalf("reading replies: %v", err)
		}
		m, rerr := c.Read(tmp)
		buf = append(buf, tmp[:m]...)
		if rerr != nil && m == 0 {
			t.Fatalf("reading replies before ACK %d: %v", to, rerr)
		}
	}
}

// fdCheckStored checks that the log in dir holds seqs 1..last[client] of
// each client exactly once, and nothing else.
func fdCheckStored(t *testing.T, dir string, last map[int]uint64) {
	t.Helper()
	got := logContents(t, dir)
	want := 0
	for client, n := range last {
		want += int(n)
		for seq := uint64(1); seq <= n; seq++ {
			if c := got[key{client, seq}]; c != 1 {
				t.Errorf("client %d seq %d (ACKed) stored %d times", client, seq, c)
			}
		}
	}
	if len(got) != want {
		t.Errorf("%d distinct records in the log %s, want %d", len(got), filepath.Base(dir), want)
	}
}

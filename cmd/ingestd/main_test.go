package main

// Process-level tests: TestMain builds the ingestd binary once (without
// -race, whatever the test process runs with), and every test runs it as a
// real process on loopback, talking ingest-v1 over TCP and HTTP to it like
// a user would. Every wait is bounded; every process a test starts is
// killed in t.Cleanup if the test did not stop it.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/internal/syncbuf"
)

// ingestdBin is the binary built by TestMain.
var ingestdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ingestd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ingestdBin = filepath.Join(dir, "ingestd")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	build := exec.Command(goTool, "build", "-o", ingestdBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building ingestd: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one running ingestd process.
type daemon struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *syncbuf.Buffer
	exited         chan struct{} // closed once cmd.Wait returned
	waitErr        error         // cmd.Wait's result, valid after exited
	tcp, metrics   string        // addresses it reported listening on
	readyAt        time.Time     // when waitReady saw both listeners
}

// startProcess runs ingestd with args. It does not wait for readiness.
func startProcess(t *testing.T, args ...string) *daemon {
	t.Helper()
	if !hasFlag(args, "--quic") && (len(args) == 0 || args[0] != "read") {
		// QUIC listens on a fixed UDP port by default: tests running
		// daemons side by side give each a free one.
		args = append([]string{"--quic", "127.0.0.1:0"}, args...)
	}
	return startCommand(t, exec.Command(ingestdBin, args...))
}

// startCommand starts cmd (ingestd, however launched), collects its
// output, and kills it at cleanup if it is still running.
func startCommand(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{t: t, cmd: cmd, stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, exited: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting ingestd: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
			return
		default:
		}
		_ = d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("ingestd pid %d did not exit after SIGKILL", d.cmd.Process.Pid)
		}
	})
	return d
}

var (
	reIngestAddr  = regexp.MustCompile(`msg="ingest listening".* addr=(\S+)`)
	reMetricsAddr = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)
)

// waitReady waits until the process logged both listeners and records
// their addresses. metrics says whether a metrics listener is expected.
func (d *daemon) waitReady(metrics bool) {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		log := d.stderr.String()
		m1 := reIngestAddr.FindStringSubmatch(log)
		m2 := reMetricsAddr.FindStringSubmatch(log)
		if m1 != nil && (!metrics || m2 != nil) {
			d.tcp = m1[1]
			if m2 != nil {
				d.metrics = m2[1]
			}
			d.readyAt = time.Now()
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("ingestd exited before it was ready (%v); stderr:\n%s", d.waitErr, log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("ingestd not ready after 15s; stderr:\n%s", log)
		}
	}
}

// waitLog waits until stderr contains s.
func (d *daemon) waitLog(s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(d.stderr.String(), s) {
		if time.Now().After(deadline) {
			d.t.Fatalf("ingestd did not log %q within %v; stderr:\n%s", s, timeout, d.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *daemon) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signalling ingestd: %v", err)
	}
}

// wait waits for the process to exit and returns its exit status (-1 if a
// signal killed it).
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.exited:
	case <-time.After(timeout):
		d.t.Fatalf("ingestd did not exit within %v; stderr:\n%s", timeout, d.stderr.String())
	}
	if d.waitErr == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(d.waitErr, &ee) {
		return ee.ExitCode()
	}
	d.t.Fatalf("waiting for ingestd: %v", d.waitErr)
	return 0
}

// startServe runs `ingestd` on loopback with the file sink in dir and two
// reactors, on ports the kernel picks (the process logs them), and waits
// until it is ready. extra flags come last, so they override.
func startServe(t *testing.T, dir string, extra ...string) *daemon {
	t.Helper()
	args := []string{"--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--reactors", "2",
		"--sink", "file", "--data-dir", dir}
	d := startProcess(t, append(args, extra...)...)
	d.waitReady(true)
	return d
}

// minUptime works around TestBugSignalRightAfterStartKills: ingestd logs
// that it listens (and serves) a moment before it installs its SIGTERM
// handler, and a SIGTERM in between kills it outright. Tests that stop a
// process right after starting it wait this long after readiness first.
const minUptime = 200 * time.Millisecond

// stop sends SIGTERM and requires exit status 0 within timeout.
func (d *daemon) stop(timeout time.Duration) {
	d.t.Helper()
	if !d.readyAt.IsZero() {
		time.Sleep(minUptime - time.Since(d.readyAt))
	}
	d.signal(syscall.SIGTERM)
	if code := d.wait(timeout); code != 0 {
		d.t.Fatalf("ingestd exited with status %d after SIGTERM, want 0; stderr:\n%s", code, d.stderr.String())
	}
}

// runCmd runs ingestd to completion (bounded) and returns its exit status
// and output.
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	d := startProcess(t, args...)
	code = d.wait(15 * time.Second)
	return code, d.stdout.String(), d.stderr.String()
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// httpGet returns the status and body of GET http://addr/path.
func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the unlabelled sample name in a
// Prometheus text exposition, and whether it was there.
func metricValue(text, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// Payloads name their client connection and seq, and fill the rest with a
// pattern derived from both, so every stored record can be checked for
// identity and integrity.

func appendPayload(dst []byte, client int, seq uint64) []byte {
	dst = fmt.Appendf(dst, "c=%d s=%d|", client, seq)
	n := int((seq*7 + uint64(client)*13) % 200)
	for i := 0; i < n; i++ {
		dst = append(dst, byte('a'+(int(seq%26)+i+client)%26))
	}
	return dst
}

// checkPayload returns the client and seq a payload names, and an error if
// it is not exactly what appendPayload makes for them.
func checkPayload(p []byte) (client int, seq uint64, err error) {
	head, _, ok := bytes.Cut(p, []byte("|"))
	if !ok {
		return 0, 0, fmt.Errorf("payload %q has no header", preview(p))
	}
	if _, err := fmt.Sscanf(string(head), "c=%d s=%d", &client, &seq); err != nil {
		return 0, 0, fmt.Errorf("payload %q: %v", preview(p), err)
	}
	if want := appendPayload(nil, client, seq); !bytes.Equal(p, want) {
		return client, seq, fmt.Errorf("payload of client %d seq %d damaged: %q, want %q", client, seq, p, want)
	}
	return client, seq, nil
}

// key identifies a message by what its payload says.
type key struct {
	client int
	seq    uint64
}

// logContents reads the log in dir with ingest.ReadLog and checks every
// record: its payload is intact and names the seq the record carries, and
// all records of one client (one connection) share one connection id.
// (Ids are not compared across clients: a restarted process reuses them.)
// It returns how many times each message is stored.
func logContents(t *testing.T, dir string) map[key]int {
	t.Helper()
	got := map[key]int{}
	connOf := map[int]uint64{}
	bad := 0
	err := ingest.ReadLog(dir, func(r ingest.Record, _ time.Time) error {
		client, seq, err := checkPayload(r.Payload)
		if err != nil {
			if bad++; bad <= 5 {
				t.Errorf("stored record conn %d seq %d: %v", r.Conn, r.Seq, err)
			}
			return nil
		}
		if seq != r.Seq {
			t.Errorf("record with seq %d carries the payload of seq %d", r.Seq, seq)
		}
		if c, ok := connOf[client]; ok && c != r.Conn {
			t.Errorf("client %d stored under connection ids %d and %d", client, c, r.Conn)
		}
		connOf[client] = r.Conn
		got[key{client, seq}]++
		return nil
	})
	if err != nil {
		t.Fatalf("ReadLog(%s): %v", dir, err)
	}
	return got
}

// sendRecords opens a connection (20 s deadline) and sends seqs 1..n of
// client with the standard payloads in one write; the caller reads the
// replies and closes it.
func sendRecords(t *testing.T, addr string, client, n int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var out []byte
	for seq := uint64(1); seq <= uint64(n); seq++ {
		if out, err = ingest.AppendData(out, seq, appendPayload(nil, client, seq)); err != nil {
			c.Close()
			t.Fatal(err)
		}
	}
	if _, err := c.Write(out); err != nil {
		c.Close()
		t.Fatalf("sending: %v", err)
	}
	return c
}

// sendAndAck opens one connection, sends seqs 1..n of client with the
// standard payloads, waits for the ACK of n, and closes the connection.
func sendAndAck(t *testing.T, addr string, client int, n int) {
	t.Helper()
	c := sendRecords(t, addr, client, n)
	defer c.Close()
	dec := ingest.NewReplyDecoder()
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		f, used, err := dec.Decode(buf)
		if err == nil {
			if f.Kind != ingest.KindAck {
				t.Fatalf("got %v seq %d, want ACKs", f.Kind, f.Seq)
			}
			if f.Seq == uint64(n) {
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
			t.Fatalf("reading replies before ACK %d: %v", n, rerr)
		}
	}
}

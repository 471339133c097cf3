package load

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// server starts a goroutine-per-connection server for the tests: echo, or
// the fixed HTTP response per request.
func server(t *testing.T, http bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if !http {
					_, _ = io.Copy(c, c)
					return
				}
				buf := make([]byte, 4096)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						have = copy(buf, buf[i+4:have])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestEchoClosedLoop(t *testing.T) {
	addr := server(t, false)
	for _, size := range []int{64, 16 << 10} {
		res, err := RunEcho(context.Background(), EchoConfig{Addr: addr, Conns: 4, Size: size, Window: 8,
			Duration: 200 * time.Millisecond, SrcIPs: []string{"127.0.0.2", "127.0.0.3"}})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK || res.MessagesAnswered == 0 || res.MessagesAnswered != res.MessagesSent {
			t.Fatalf("size %d: %+v", size, res)
		}
		if res.LatencyUS.Count != int64(res.MessagesAnswered) || res.LatencyUS.P50 <= 0 {
			t.Fatalf("size %d: latency %+v for %d messages", size, res.LatencyUS, res.MessagesAnswered)
		}
	}
}

func TestEchoRateBurstSlow(t *testing.T) {
	addr := server(t, false)
	res, err := RunEcho(context.Background(), EchoConfig{Addr: addr, Conns: 10, Size: 64, Window: 64,
		Duration: 400 * time.Millisecond, Rate: 5000, BurstOn: 50 * time.Millisecond, BurstOff: 50 * time.Millisecond,
		SlowFraction: 0.1, SlowAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.SlowConns != 1 {
		t.Fatalf("%+v", res)
	}
	// 5000/s for 0.4s over the 9 normal connections: about 2000 messages.
	if res.MessagesSent < 1500 || res.MessagesSent > 2100 {
		t.Fatalf("sent %d messages, want about 2000", res.MessagesSent)
	}
	// Lag is the normal connections' own: one sample per message they
	// sent, none from the slow one that blocks in write by design.
	if res.LagUS.Count != int64(res.MessagesSent) {
		t.Fatalf("lag has %d samples for %d messages sent by the normal connections", res.LagUS.Count, res.MessagesSent)
	}
}

func TestEchoDetectsCorruption(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					buf[0] ^= 1 // a server that damages every message
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	res, err := RunEcho(context.Background(), EchoConfig{Addr: ln.Addr().String(), Conns: 2, Size: 64, Window: 4, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Errors == 0 || !strings.Contains(strings.Join(res.ErrorSamples, " "), "corrupted") {
		t.Fatalf("corruption not reported: %+v", res)
	}
}

func TestEchoConnectFailure(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	res, err := RunEcho(context.Background(), EchoConfig{Addr: addr, Conns: 2, Size: 64, Window: 4, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Errors != 2 {
		t.Fatalf("%+v", res)
	}
}

func TestAccept(t *testing.T) {
	addr := server(t, true)
	res, err := RunAccept(context.Background(), AcceptConfig{Addr: addr, Workers: 4, Duration: 200 * time.Millisecond,
		SrcIPs: []string{"127.0.0.2", "127.0.0.3"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Connections < 10 || res.LatencyUS.Count != res.Connections {
		t.Fatalf("%+v", res)
	}
}

func TestIdle(t *testing.T) {
	addr := server(t, false)
	pr, pw := io.Pipe()
	var out bytes.Buffer
	done := make(chan *IdleResult, 1)
	go func() {
		res, err := RunIdle(context.Background(), IdleConfig{Addr: addr, Conns: 50, SrcIPs: []string{"127.0.0.4"}}, pr, &out)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(300 * time.Millisecond)
	pw.Close() // EOF: verify and quit
	res := <-done
	if res == nil || !res.OK || res.Verified != 50 {
		t.Fatalf("%+v", res)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 2 || !strings.Contains(out.String(), `"ready":true`) {
		t.Fatalf("output %q", out.String())
	}
}

// countingEcho is an echo server that counts the bytes it read and the
// connections open right now.
type countingEcho struct {
	addr  string
	bytes atomic.Int64
	open  atomic.Int64
}

func newCountingEcho(t *testing.T) *countingEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	e := &countingEcho{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.open.Add(1)
			go func() {
				defer e.open.Add(-1)
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					e.bytes.Add(int64(n))
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return e
}

// The Sync hook brackets exactly the measured phase: at start every
// connection is open and nothing was sent; at end everything was echoed
// and no connection is closed yet.
func TestEchoSyncBracketsTheMeasuredPhase(t *testing.T) {
	srv := newCountingEcho(t)
	var phases []string
	var atStart, atEnd [2]int64
	sync := func(phase string) error {
		phases = append(phases, phase)
		// The server may still be accepting the last connections.
		deadline := time.Now().Add(2 * time.Second)
		for srv.open.Load() < 4 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		v := [2]int64{srv.bytes.Load(), srv.open.Load()}
		if phase == PhaseStart {
			atStart = v
		} else {
			atEnd = v
		}
		return nil
	}
	res, err := RunEcho(context.Background(), EchoConfig{Addr: srv.addr, Conns: 4, Size: 64, Window: 8,
		Duration: 200 * time.Millisecond, Sync: sync})
	if err != nil || !res.OK {
		t.Fatalf("err %v, result %+v", err, res)
	}
	if strings.Join(phases, ",") != "start,end" {
		t.Fatalf("phases %v", phases)
	}
	if atStart != [2]int64{0, 4} {
		t.Errorf("at start: %d bytes read by the server, %d connections open; want 0 and 4", atStart[0], atStart[1])
	}
	if want := int64(res.MessagesAnswered) * 64; atEnd != [2]int64{want, 4} {
		t.Errorf("at end: %d bytes read, %d connections open; want %d and 4", atEnd[0], atEnd[1], want)
	}
}

func TestSyncErrorAborts(t *testing.T) {
	srv := newCountingEcho(t)
	boom := errors.New("harness gone")
	_, err := RunEcho(context.Background(), EchoConfig{Addr: srv.addr, Conns: 2, Size: 64, Window: 4,
		Duration: 100 * time.Millisecond, Sync: func(string) error { return boom }})
	if !errors.Is(err, boom) || srv.bytes.Load() != 0 {
		t.Fatalf("echo: err %v, %d bytes sent", err, srv.bytes.Load())
	}
	addr := server(t, true)
	var phases []string
	res, err := RunAccept(context.Background(), AcceptConfig{Addr: addr, Workers: 2, Duration: 100 * time.Millisecond,
		Sync: func(p string) error { phases = append(phases, p); return nil }})
	if err != nil || !res.OK || strings.Join(phases, ",") != "start,end" {
		t.Fatalf("accept: err %v, phases %v, %+v", err, phases, res)
	}
}

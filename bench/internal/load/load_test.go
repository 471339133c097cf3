package load

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
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
	if res.LagUS.Count == 0 {
		t.Fatal("no lag recorded")
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

package http1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"testing"
	"time"
)

// rawExchange sends req on a new connection to addr and returns the
// response heads read (status and fields), in order, until a final one,
// and then n bytes that follow it.
func rawExchange(t *testing.T, addr, req string, n int) ([]int, []textproto.MIMEHeader, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	tp := textproto.NewReader(bufio.NewReader(c))
	var codes []int
	var heads []textproto.MIMEHeader
	for {
		line, err := tp.ReadLine()
		if err != nil {
			t.Fatalf("reading a status line: %v", err)
		}
		var code int
		if _, err := fmtSscan(line, &code); err != nil {
			t.Fatalf("status line %q: %v", line, err)
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("reading fields: %v", err)
		}
		h.Del("Date")
		codes, heads = append(codes, code), append(heads, h)
		if code >= 200 || code == 101 {
			break
		}
	}
	rest := make([]byte, n)
	if _, err := io.ReadFull(tp.R, rest); err != nil {
		t.Fatalf("reading %d bytes after the head: %v", n, err)
	}
	return codes, heads, rest
}

// TestNetHTTPUpgradeAfterWriteHeader: the coder/websocket way to upgrade
// (set the fields, WriteHeader(101), then Hijack) sends the 101 head
// before the hijacked connection's bytes, as net/http does; the test runs
// both servers.
func TestNetHTTPUpgradeAfterWriteHeader(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Sec-Websocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("Hijack after WriteHeader(101): %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("\x81\x05hello") // a text frame
		_ = brw.Flush()
	})
	gyre := startNetHTTP(t, Config{}, &NetHTTP{Handler: h})
	ref := httptest.NewServer(h)
	defer ref.Close()
	req := "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	gc, gh, gb := rawExchange(t, gyre.Addr().String(), req, 7)
	rc, rh, rb := rawExchange(t, ref.Listener.Addr().String(), req, 7)
	if len(gc) != 1 || gc[0] != 101 || string(gb) != "\x81\x05hello" {
		t.Fatalf("gyre: statuses %v, then %q", gc, gb)
	}
	if len(rc) != 1 || rc[0] != 101 || string(rb) != string(gb) {
		t.Fatalf("net/http: statuses %v, then %q", rc, rb)
	}
	for _, k := range []string{"Upgrade", "Connection", "Sec-Websocket-Accept"} {
		if gh[0].Get(k) != rh[0].Get(k) {
			t.Errorf("%s: gyre %q, net/http %q", k, gh[0].Get(k), rh[0].Get(k))
		}
	}
}

// TestNetHTTPEarlyHints: WriteHeader(103) sends an informational response
// with the fields set so far, then the final response follows, as with
// net/http.
func TestNetHTTPEarlyHints(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "2")
		_, _ = io.WriteString(w, "ok")
	})
	gyre := startNetHTTP(t, Config{}, &NetHTTP{Handler: h})
	ref := httptest.NewServer(h)
	defer ref.Close()
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	gc, gh, gb := rawExchange(t, gyre.Addr().String(), req, 2)
	rc, rh, rb := rawExchange(t, ref.Listener.Addr().String(), req, 2)
	if len(gc) != 2 || gc[0] != 103 || gc[1] != 200 || string(gb) != "ok" {
		t.Fatalf("gyre: statuses %v, body %q", gc, gb)
	}
	if len(rc) != 2 || rc[0] != 103 || rc[1] != 200 || string(rb) != "ok" {
		t.Fatalf("net/http: statuses %v, body %q", rc, rb)
	}
	if gh[0].Get("Link") != rh[0].Get("Link") || gh[1].Get("Link") != rh[1].Get("Link") {
		t.Fatalf("Link fields differ: gyre %v, net/http %v", gh, rh)
	}
}

// fmtSscan reads the status code of an HTTP/1.x status line.
func fmtSscan(line string, code *int) (int, error) {
	var minor int
	return fmt.Sscanf(line, "HTTP/1.%d %d", &minor, code)
}

// TestNativeInformational: Response.Informational sends a 1xx response
// before the final one (none to an HTTP/1.0 client), and is refused once
// the head was sent.
func TestNativeInformational(t *testing.T) {
	late := make(chan error, 1)
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		if err := w.Informational(103, "Link", "</style.css>; rel=preload; as=style", "Bad Name", "dropped"); err != nil {
			t.Errorf("Informational: %v", err)
		}
		w.AddHeader("Content-Type", "text/plain")
		w.SetContentLength(2)
		_, _ = w.WriteString("ok")
		_ = w.Flush()
		late <- w.Informational(103)
	}))
	codes, heads, body := rawExchange(t, s.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	if len(codes) != 2 || codes[0] != 103 || codes[1] != 200 || string(body) != "ok" {
		t.Fatalf("statuses %v, body %q", codes, body)
	}
	if heads[0].Get("Link") != "</style.css>; rel=preload; as=style" || len(heads[0]) != 1 {
		t.Fatalf("103 fields %v", heads[0])
	}
	if err := <-late; err != ErrHeadSent {
		t.Fatalf("Informational after the head: %v, want ErrHeadSent", err)
	}
	codes, _, _ = rawExchange(t, s.Addr().String(), "GET / HTTP/1.0\r\n\r\n", 2)
	if len(codes) != 1 || codes[0] != 200 {
		t.Fatalf("HTTP/1.0: statuses %v, want only the final 200", codes)
	}
	<-late
}

package http1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// wsAccept is RFC 6455's Sec-WebSocket-Accept for key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsWriteFrame writes one final frame; a non-nil mask masks the payload
// (clients must, servers must not).
func wsWriteFrame(w io.Writer, op byte, payload []byte, mask []byte) error {
	hdr := []byte{0x80 | op}
	mbit := byte(0)
	if mask != nil {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, mbit|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, mbit|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, mbit|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	data := payload
	if mask != nil {
		hdr = append(hdr, mask...)
		data = make([]byte, len(payload))
		for i := range payload {
			data[i] = payload[i] ^ mask[i%4]
		}
	}
	_, err := w.Write(append(hdr, data...))
	return err
}

// wsReadFrame reads one frame, unmasking it; masked tells whether it was.
func wsReadFrame(r io.Reader) (op byte, payload []byte, masked bool, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	op, masked = h[0]&0x0f, h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	var mask [4]byte
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return
}

// wsEcho is a WebSocket echo server written against http.Hijacker only.
func wsEcho(t *testing.T, done chan<- error, arrived func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") == "" {
			http.Error(w, "not a websocket handshake", 400)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			done <- errors.New("ResponseWriter is not an http.Hijacker")
			return
		}
		// Wait until the frame the client sent with the handshake has
		// reached the server (it waits, unread, in the reactor).
		for deadline := time.Now().Add(5 * time.Second); !arrived(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				done <- errors.New("the frame sent with the handshake never reached the server")
				return
			}
		}
		conn, brw, err := hj.Hijack()
		if err != nil {
			done <- err
			return
		}
		done <- func() error {
			defer conn.Close()
			if _, err := w.Write([]byte("x")); err != http.ErrHijacked {
				return errors.New("Write after Hijack: want http.ErrHijacked, got " + errString(err))
			}
			if _, _, err := hj.Hijack(); err != http.ErrHijacked {
				return errors.New("second Hijack: want http.ErrHijacked, got " + errString(err))
			}
			if brw.Reader.Buffered() == 0 {
				return errors.New("the frame sent with the handshake is not in the bufio.Reader")
			}
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: " + wsAccept(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
			if err := brw.Flush(); err != nil {
				return err
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			for {
				op, payload, masked, err := wsReadFrame(brw)
				if err != nil {
					return err
				}
				if !masked {
					return errors.New("client frame not masked")
				}
				if op == 8 { // close: answer and end
					if err := wsWriteFrame(conn, 8, payload, nil); err != nil {
						return err
					}
					return nil
				}
				if err := wsWriteFrame(conn, op, payload, nil); err != nil {
					return err
				}
			}
		}()
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestNetHTTPHijackWebSocket: an RFC 6455 handshake by hand; the handler
// hijacks, answers 101 and echoes frames (small, 16-bit and 64-bit
// lengths, the last over the conn's read buffer) until the client's close.
// The first frame travels in the same segment as the handshake, so it
// must come out of the bufio.Reader Hijack returns.
func TestNetHTTPHijackWebSocket(t *testing.T) {
	done := make(chan error, 2)
	m := http.NewServeMux()
	var srv atomic.Pointer[Server] // read by the handler: set before any request
	var sent atomic.Int64
	m.HandleFunc("GET /ws", wsEcho(t, done, func() bool { return srv.Load().Group().Stats().BytesIn >= uint64(sent.Load()) }))
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: m})
	srv.Store(s)
	c := dial(t, s)
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	var req bytes.Buffer
	req.WriteString("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n")
	mask := []byte{1, 2, 3, 4}
	first := []byte("hello, early frame")
	_ = wsWriteFrame(&req, 1, first, mask)
	sent.Store(int64(req.Len()))
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("reading the 101: %v", err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("handshake answer: %d %q", resp.StatusCode, resp.Header)
	}
	expect := func(want []byte) {
		t.Helper()
		op, got, masked, err := wsReadFrame(br)
		if err != nil {
			t.Fatalf("reading echo: %v", err)
		}
		if op != 2 && op != 1 || masked || !bytes.Equal(got, want) {
			t.Fatalf("echo: op %d masked %v, %d bytes, want %d", op, masked, len(got), len(want))
		}
	}
	expect(first)
	for _, n := range []int{5, 300, 200 << 10} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		if err := wsWriteFrame(c, 2, p, mask); err != nil {
			t.Fatal(err)
		}
		expect(p)
	}
	if err := wsWriteFrame(c, 8, []byte{0x03, 0xe8}, mask); err != nil {
		t.Fatal(err)
	}
	op, _, _, err := wsReadFrame(br)
	if err != nil || op != 8 {
		t.Fatalf("close frame: op %d, %v", op, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("handler: %v", err)
	}
	expectClosed(t, c, br) // the handler's conn.Close closed the TCP connection
}

// TestNetHTTPHijackConn: the hijacked net.Conn's deadlines fail with
// os.ErrDeadlineExceeded and leave it open; a Close on the client side is
// io.EOF; Shutdown closes a hijacked connection still open.
func TestNetHTTPHijackConn(t *testing.T) {
	done := make(chan error, 1)
	held := make(chan net.Conn, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			done <- err
			return
		}
		done <- func() error {
			_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				return errors.New("Read past the deadline: " + errString(err))
			}
			_ = conn.SetReadDeadline(time.Time{})
			if _, err := conn.Write([]byte("ready\n")); err != nil {
				return err
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(conn, b); err != nil || string(b) != "ping" {
				return errors.New("reading ping: " + errString(err))
			}
			if _, err := conn.Write([]byte("pong\n")); err != nil {
				return err
			}
			if r.URL.Path == "/keep" {
				held <- conn // left open for Shutdown
				return nil
			}
			if _, err := conn.Read(b); err != io.EOF {
				return errors.New("Read after the client closed: " + errString(err))
			}
			return conn.Close()
		}()
	})
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: h})
	for _, path := range []string{"/close", "/keep"} {
		c := dial(t, s)
		_, _ = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		if line, err := br.ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("%s: %q %v", path, line, err)
		}
		_, _ = io.WriteString(c, "ping")
		if line, err := br.ReadString('\n'); err != nil || line != "pong\n" {
			t.Fatalf("%s: %q %v", path, line, err)
		}
		if path == "/close" {
			c.Close()
			if err := <-done; err != nil {
				t.Fatalf("handler: %v", err)
			}
			continue
		}
		if err := <-done; err != nil {
			t.Fatalf("handler: %v", err)
		}
		conn := <-held
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(ctx) }()
		expectClosed(t, c, br)
		c.Close() // spares the server's linger
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown with a hijacked connection open: %v", err)
		}
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("hijacked Read after Shutdown: %v", err)
		}
		if err := conn.Close(); err != nil {
			t.Fatalf("Close after Shutdown: %v", err)
		}
	}
}

// TestNetHTTPHijackAfterWrite: once body bytes have gone out Hijack fails
// (net/http would flush and hand over) and the response goes on normally.
// After WriteHeader alone it works: TestNetHTTPUpgradeAfterWriteHeader.
func TestNetHTTPHijackAfterWrite(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "body ")
		w.(http.Flusher).Flush()
		if _, _, err := w.(http.Hijacker).Hijack(); err == nil {
			panic("Hijack after the body started succeeded")
		}
		_, _ = io.WriteString(w, "still here")
	})
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: h})
	resp, err := client(t).Get(urlOf(s, "/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body still here" {
		t.Fatalf("%d %q, want %q", resp.StatusCode, b, "body still here")
	}
}

// TestNetHTTPContextClientGone: Request.Context ends while the handler
// runs when the client closes its connection or resets it.
func TestNetHTTPContextClientGone(t *testing.T) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("context not canceled")
		}
	})
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: h})
	for _, reset := range []bool{false, true} {
		c := dial(t, s)
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		<-started
		if reset {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("reset=%v: %v", reset, err)
		}
	}
}

// TestNetHTTPContextPipelined: a pipelined request behind the first
// keeps the first one's context alive (the server stops reading at it)
// and is served after it, its context alive too.
func TestNetHTTPContextPipelined(t *testing.T) {
	var n atomic.Int32
	var srv atomic.Pointer[Server] // read by the handler: set before any request
	const both = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
	h2 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			// The first handler runs on until the second request has
			// reached the server behind it.
			for deadline := time.Now().Add(5 * time.Second); srv.Load().Group().Stats().BytesIn < uint64(len(both)) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}
		if err := r.Context().Err(); err != nil {
			t.Errorf("context ended: %v", err)
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})
	s2 := startNetHTTP(t, Config{}, &NetHTTP{Handler: h2})
	srv.Store(s2)
	c := dial(t, s2)
	_, _ = io.WriteString(c, both)
	br := bufio.NewReader(c)
	for _, want := range []string{"/a", "/b"} {
		if _, body := readResponse(t, br, "GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

// TestNetHTTPContextShutdownGrace: a handler still running when
// Shutdown's context ends sees its Request.Context canceled.
func TestNetHTTPContextShutdownGrace(t *testing.T) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("context not canceled")
		}
	})
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: h})
	c := dial(t, s)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the context's deadline", err)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler context: %v", err)
	}
	expectClosed(t, c, bufio.NewReader(c))
}

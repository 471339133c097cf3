package http1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestNetHTTPHalfClose: a client that sends its request and shuts down its
// sending side (TCP half-close) still gets its response, and the handler's
// context ends at the FIN: the same as net/http's server, which the test
// runs side by side.
func TestNetHTTPHalfClose(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // the client half-closed
		case <-time.After(10 * time.Second):
			http.Error(w, "the context did not end at the FIN", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "answered after the FIN")
	})
	gyre := startNetHTTP(t, Config{}, &NetHTTP{Handler: h})
	ref := httptest.NewServer(h)
	defer ref.Close()
	for name, addr := range map[string]string{"gyre": gyre.Addr().String(), "net/http": ref.Listener.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			resp, body := readResponse(t, bufio.NewReader(c), "GET")
			if resp.StatusCode != 200 || body != "answered after the FIN" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
		})
	}
}

// TestHalfCloseBetweenRequests: a FIN after the response has ended (an
// idle keep-alive connection) or in the middle of a request head closes
// the connection, as before.
func TestHalfCloseBetweenRequests(t *testing.T) {
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) { w.WriteString("ok") }))
	for _, tc := range []struct{ name, send string }{
		{"idle", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"mid-head", "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the response: %q, %v; want the server to close", rest, err)
			}
		})
	}
}

package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRoundTrip: one keep-alive connection carries several requests whose
// responses have a Content-Length body, a chunked body, or none; a
// non-200 answer and Connection: close are errors.
func TestRoundTrip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("X-Mode") {
		case "chunked":
			_, _ = w.Write([]byte("Hello, "))
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte("World!"))
		case "404":
			http.NotFound(w, r)
		case "close":
			w.Header().Set("Connection", "close")
			_, _ = w.Write([]byte("bye"))
		default:
			_, _ = w.Write([]byte("Hello, World!"))
		}
	}))
	defer srv.Close()
	dial := func() *conn {
		nc, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return &conn{c: nc}
	}
	c := dial()
	req := func(mode string) []byte {
		return []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Mode: " + mode + "\r\n\r\n")
	}
	for _, mode := range []string{"plain", "chunked", "plain", "chunked"} {
		if err := roundTrip(c, req(mode), 5*time.Second); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
	}
	// An error leaves the rest of that response unread: a fresh
	// connection for each.
	if err := roundTrip(dial(), req("404"), 5*time.Second); err == nil || !strings.Contains(err.Error(), "200") {
		t.Fatalf("404: got %v, want a status error", err)
	}
	if err := roundTrip(dial(), req("close"), 5*time.Second); err == nil || !strings.Contains(err.Error(), "close") {
		t.Fatalf("close: got %v, want a Connection: close error", err)
	}
}

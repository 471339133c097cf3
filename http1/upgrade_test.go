package http1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gyre-io/gyre/reactor"
)

// shouter is a protocol after an upgrade: it answers every byte
// upper-cased, and says goodbye at the peer's FIN.
type shouter struct {
	opened bool
	closed chan error
}

func (s *shouter) OnOpen(*reactor.Conn) { s.opened = true }
func (s *shouter) OnData(c *reactor.Conn, b []byte) int {
	_, _ = c.Write(bytes.ToUpper(b))
	return len(b)
}
func (s *shouter) OnPeerFIN(c *reactor.Conn) bool {
	_, _ = c.Write([]byte("|BYE"))
	_ = c.Close()
	return true
}
func (s *shouter) OnClose(_ *reactor.Conn, cause error) { s.closed <- cause }

// TestNativeUpgrade: a native handler switches the connection to another
// protocol (101, Connection: Upgrade); the new handler gets the bytes the
// client sent right after the request, then the rest, on the reactor.
func TestNativeUpgrade(t *testing.T) {
	sh := &shouter{closed: make(chan error, 1)}
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		if string(r.Header("Upgrade")) != "shout" {
			w.SetStatus(426)
			return
		}
		w.AddHeader("Upgrade", "shout")
		if err := w.Upgrade(sh); err != nil {
			t.Errorf("Upgrade: %v", err)
		}
		if err := w.Upgrade(sh); err != ErrUpgrade {
			t.Errorf("second Upgrade: %v, want ErrUpgrade", err)
		}
	}))
	c := dial(t, s)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\nearly "
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "shout" || resp.Header.Get("Connection") != "Upgrade" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := io.WriteString(c, "and late"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("EARLY AND LATE"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "EARLY AND LATE" {
		t.Fatalf("after the upgrade: %q, %v", got, err)
	}
	_ = c.(interface{ CloseWrite() error }).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "|BYE" {
		t.Fatalf("at FIN: %q, %v", rest, err)
	}
	if cause := <-sh.closed; cause != nil || !sh.opened {
		t.Fatalf("new handler: opened %v, closed with %v", sh.opened, cause)
	}
}

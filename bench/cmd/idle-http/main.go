// Command idle-http measures what an idle HTTP/1.1 keep-alive connection
// costs a server after one request, as idle-rss does for the echo and
// ingest servers: it reads the server's RSS (/proc/PID/status), opens
// -conns connections, sends one "GET / HTTP/1.1" keep-alive request on
// each and reads the whole response (status line, headers, a
// Content-Length or chunked body; it must be 200), waits -settle, and prints the RSS
// growth per connection, once connected and after the requests. A warm-up
// of 200 connections through the same path runs first, so one-time costs
// are in the start value. The server must keep the connections open
// (idle timeouts longer than the run).
//
//	idle-http -addr 127.0.0.1:8080 -pid $(pgrep -f gyre-http) -conns 10000
//
// The last line of output is machine-readable for scripts:
//
//	idle-http: conns=N rss_start_kib=K connected_b_per_conn=B after_request_b_per_conn=B
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"github.com/gyre-io/gyre/bench/internal/procfs"
	"io"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	pid := flag.Int("pid", 0, "the server's process id")
	conns := flag.Int("conns", 10000, "connections to hold")
	settle := flag.Duration("settle", 2*time.Second, "wait after connecting and after the requests before reading RSS")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline for each connection's request and response")
	flag.Parse()
	if err := run(*addr, *pid, *conns, *settle, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "idle-http: %v\n", err)
		os.Exit(1)
	}
}

type conn struct {
	c  net.Conn
	br *bufio.Reader
}

func run(addr string, pid, n int, settle, timeout time.Duration) error {
	if pid <= 0 || n <= 0 {
		return errors.New("-pid and -conns must be positive")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	req := []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: idle-http\r\n\r\n")
	dial := func() (*conn, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		return &conn{c: c}, nil
	}

	var warm []*conn
	for range 200 {
		c, err := dial()
		if err != nil {
			return err
		}
		warm = append(warm, c)
		if err := roundTrip(c, req, timeout); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	for _, c := range warm {
		c.c.Close()
	}
	time.Sleep(settle)
	before, err := procfs.RSS(pid)
	if err != nil {
		return err
	}
	cs := make([]*conn, 0, n)
	defer func() {
		for _, c := range cs {
			c.c.Close()
		}
	}()
	for range n {
		c, err := dial()
		if err != nil {
			return fmt.Errorf("after %d connections: %w", len(cs), err)
		}
		cs = append(cs, c)
	}
	time.Sleep(settle)
	connected, err := procfs.RSS(pid)
	if err != nil {
		return err
	}
	for i, c := range cs {
		if err := roundTrip(c, req, timeout); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		c.br = nil // the client's buffer is not the server's cost; drop it
	}
	time.Sleep(settle)
	after, err := procfs.RSS(pid)
	if err != nil {
		return err
	}
	// Every connection must still be open: a server that closed idle
	// connections would look cheap. A read with a short deadline must time
	// out, not see EOF.
	for i, c := range cs {
		_ = c.c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if _, err := c.c.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("connection %d is not idle and open after the settle time: read gave %v", i, err)
		}
	}
	fmt.Printf("%d connections: RSS %d KiB at start; %d B per connection once connected, %d B after one request\n",
		n, before>>10, (connected-before)/int64(n), (after-before)/int64(n))
	fmt.Printf("idle-http: conns=%d rss_start_kib=%d connected_b_per_conn=%d after_request_b_per_conn=%d\n",
		n, before>>10, (connected-before)/int64(n), (after-before)/int64(n))
	return nil
}

// roundTrip sends req and reads one response with a Content-Length body
// (or none) or a chunked one, which must have status 200 and must not close the connection.
func roundTrip(c *conn, req []byte, timeout time.Duration) error {
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.c, 1024)
	}
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	defer c.c.SetDeadline(time.Time{})
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	tp := textproto.NewReader(c.br)
	line, err := tp.ReadLine()
	if err != nil {
		return fmt.Errorf("status line: %w", err)
	}
	proto, status, _ := strings.Cut(line, " ")
	if proto != "HTTP/1.1" || !strings.HasPrefix(status, "200") {
		return fmt.Errorf("want HTTP/1.1 200, got %q", line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("headers: %w", err)
	}
	if strings.EqualFold(h.Get("Connection"), "close") {
		return errors.New("the server closes the connection (Connection: close)")
	}
	if te := h.Get("Transfer-Encoding"); te != "" {
		if !strings.EqualFold(te, "chunked") {
			return fmt.Errorf("unexpected Transfer-Encoding %q", te)
		}
		if err := readChunked(c.br); err != nil {
			return fmt.Errorf("chunked body: %w", err)
		}
	} else {
		n := 0
		if cl := h.Get("Content-Length"); cl != "" {
			if n, err = strconv.Atoi(cl); err != nil || n < 0 {
				return fmt.Errorf("bad Content-Length %q", cl)
			}
		}
		if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
			return fmt.Errorf("body: %w", err)
		}
	}
	if c.br.Buffered() != 0 {
		return fmt.Errorf("%d bytes after the response", c.br.Buffered())
	}
	return nil
}

// readChunked reads and discards a chunked body and its trailer section.
func readChunked(br *bufio.Reader) error {
	tp := textproto.NewReader(br)
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return err
		}
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			_, err := tp.ReadMIMEHeader() // trailers, up to the empty line
			return err
		}
		if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
			return err
		}
	}
}

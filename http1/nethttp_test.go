package http1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mux is the net/http handler the net/http face's tests serve.
func mux(t testing.TB) *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "Hello, World!")
	})
	m.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := io.Copy(w, r.Body); err != nil {
			t.Logf("echo: %v", err)
		}
	})
	m.HandleFunc("POST /len", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		fmt.Fprintf(w, "n=%d", n)
	})
	m.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
		_, _ = io.WriteString(w, r.URL.Query().Get("id"))
	})
	m.HandleFunc("GET /flush", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "tick %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	})
	m.HandleFunc("GET /html", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html><body>sniff me</body></html>")
	})
	m.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	m.HandleFunc("GET /header", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got", r.Header.Get("X-Test")+"|"+r.Host+"|"+r.URL.RawQuery+"|"+r.Proto)
		w.WriteHeader(http.StatusAccepted)
	})
	return m
}

func startNetHTTP(t testing.TB, cfg Config, a *NetHTTP) *Server {
	t.Helper()
	if a.ErrorLog == nil {
		a.ErrorLog = log.New(io.Discard, "", 0)
	}
	return startServer(t, cfg, a)
}

// TestNetHTTPBasics: a ServeMux on gyre, through net/http's client: routes,
// header fields both ways, content sniffing, flushing, HEAD, a panic, a
// chunked upload echoed back.
func TestNetHTTPBasics(t *testing.T) {
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: mux(t)})
	cl := client(t)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := cl.Get(urlOf(s, path))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	if resp, body := get("/"); body != "Hello, World!" || resp.ContentLength != 13 || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("/: %q %d %v", body, resp.ContentLength, resp.Header)
	}
	if resp, _ := get("/nope"); resp.StatusCode != 404 {
		t.Fatalf("/nope: %d", resp.StatusCode)
	}
	if resp, _ := get("/html"); resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("sniffed type %q", resp.Header.Get("Content-Type"))
	}
	if resp, body := get("/flush"); body != "tick 0\ntick 1\ntick 2\n" || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("/flush: %q %v", body, resp.TransferEncoding)
	}
	req, _ := http.NewRequest("GET", urlOf(s, "/header?q=1"), nil)
	req.Header.Set("X-Test", "v")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 || resp.Header.Get("X-Got") != "v|"+s.Addr().String()+"|q=1|HTTP/1.1" {
		t.Fatalf("/header: %d %q", resp.StatusCode, resp.Header.Get("X-Got"))
	}
	resp, err = cl.Head(urlOf(s, "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 13 {
		t.Fatalf("HEAD: length %d", resp.ContentLength)
	}
	if _, err := cl.Get(urlOf(s, "/panic")); err == nil {
		t.Fatal("a panicking handler's request succeeded")
	}
	src := bytes.Repeat([]byte("0123456789"), 500000)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(src)
		pw.Close()
	}()
	resp, err = cl.Post(urlOf(s, "/echo"), "", pr)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, src) {
		t.Fatalf("echo: %d bytes back, %d sent", len(got), len(src))
	}
}

// TestNetHTTPOrder: pipelined requests on one connection run one at a
// time and answer in order, even when later ones would finish first.
func TestNetHTTPOrder(t *testing.T) {
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: mux(t)})
	c := dial(t, s)
	var req strings.Builder
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&req, "GET /sleep?d=%dms&id=%d HTTP/1.1\r\nHost: x\r\n\r\n", (6-i)*10, i)
	}
	_, _ = io.WriteString(c, req.String())
	br := bufio.NewReader(c)
	for i := 0; i < 6; i++ {
		if _, body := readResponse(t, br, "GET"); body != strconv.Itoa(i) {
			t.Fatalf("response %d: %q", i, body)
		}
	}
}

// TestNetHTTPConcurrency: handlers of different connections run at once.
func TestNetHTTPConcurrency(t *testing.T) {
	const n = 20
	var running, peak atomic.Int32
	release := make(chan struct{})
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := running.Add(1)
		for {
			p := peak.Load()
			if v <= p || peak.CompareAndSwap(p, v) {
				break
			}
		}
		<-release
		running.Add(-1)
	})})
	cl := client(t)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get(urlOf(s, "/"))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, "all handlers running", func() bool { return running.Load() == n })
	close(release)
	wg.Wait()
	if peak.Load() != n {
		t.Fatalf("peak concurrency %d, want %d", peak.Load(), n)
	}
}

// TestNetHTTPBodyBound: a handler that reads a large upload slowly holds
// the client back: the server buffers at most BodyBuffer plus what the
// reactor had in flight, not the body.
func TestNetHTTPBodyBound(t *testing.T) {
	var read atomic.Int64
	s := startNetHTTP(t, Config{}, &NetHTTP{BodyBuffer: 32 << 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 8<<10)
		for {
			n, err := r.Body.Read(buf)
			read.Add(int64(n))
			if err != nil {
				break
			}
			if read.Load() < 4<<20 {
				time.Sleep(time.Millisecond)
			}
		}
		fmt.Fprintf(w, "n=%d", read.Load())
	})})
	c := dial(t, s)
	const size = 32 << 20
	go func() {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		for n := 0; n < size; n += len(pattern) {
			if _, err := c.Write(pattern); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the handler to read 1 MiB", func() bool { return read.Load() >= 1<<20 })
	in, r := s.Group().Stats().BytesIn, read.Load()
	t.Logf("server received %d bytes, the handler read %d", in, r)
	if in-uint64(r) > 2<<20 {
		t.Fatalf("server holds %d bytes the handler has not read", in-uint64(r))
	}
	resp, body := readResponse(t, bufio.NewReader(c), "POST")
	if resp.StatusCode != 200 || body != "n="+strconv.Itoa(size) {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// TestNetHTTPSlowClient: a handler writing to a client that does not read
// blocks in Write (bounded output); its context ends when the connection
// is closed.
func TestNetHTTPSlowClient(t *testing.T) {
	done := make(chan error, 1)
	var wrote atomic.Int64
	s := startNetHTTP(t, Config{}, &NetHTTP{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			n, err := w.Write(pattern)
			wrote.Add(int64(n))
			if err != nil {
				<-r.Context().Done()
				done <- err
				return
			}
		}
	})})
	c := dial(t, s)
	_, _ = io.WriteString(c, okGet)
	var last int64
	for i := 0; i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		if w := wrote.Load(); w == last && w > 0 {
			break
		} else {
			last = w
		}
	}
	if last > 64<<20 {
		t.Fatalf("handler wrote %d bytes to a client that reads nothing", last)
	}
	t.Logf("handler blocked after writing %d bytes", last)
	c.Close()
	select {
	case err := <-done:
		t.Logf("Write failed with %v; context done", err)
	case <-time.After(5 * time.Second):
		t.Fatal("handler still blocked after the client closed")
	}
}

// TestNetHTTPServerKnobs: an http.Server's timeouts and limits carried
// over, and Shutdown draining a request in progress.
func TestNetHTTPServerKnobs(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	m := mux(t)
	m.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "slow done")
	})
	hs := &http.Server{Handler: m, ReadHeaderTimeout: time.Second, IdleTimeout: 500 * time.Millisecond,
		MaxHeaderBytes: 4096, ErrorLog: log.New(io.Discard, "", 0), Addr: "127.0.0.1:0"}
	s := NewNetHTTPServer(hs, Config{Reactor: reactorOne, Logger: quiet})
	if err := s.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	// MaxHeaderBytes: 431.
	c := dial(t, s)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX: %s\r\n\r\n", strings.Repeat("a", 5000))
	if resp, _ := readResponse(t, bufio.NewReader(c), "GET"); resp.StatusCode != 431 {
		t.Fatalf("head over MaxHeaderBytes: %d", resp.StatusCode)
	}
	// IdleTimeout.
	c = dial(t, s)
	_, _ = io.WriteString(c, okGet)
	readResponse(t, bufio.NewReader(c), "GET")
	if d := closedAfter(t, c, time.Now(), 3*time.Second); d < 400*time.Millisecond {
		t.Fatalf("idle connection closed after %v, want about 500ms", d)
	}
	// ReadHeaderTimeout.
	c = dial(t, s)
	if d := closedAfter(t, c, time.Now(), 3*time.Second); d < 900*time.Millisecond {
		t.Fatalf("silent connection closed after %v, want about 1s", d)
	}
	// Shutdown waits for the request in progress.
	c = dial(t, s)
	_, _ = io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	waitFor(t, "Shutdown to reach the connection", func() bool { return s.drained.Load() > 0 })
	close(release)
	br := bufio.NewReader(c)
	if resp, body := readResponse(t, br, "GET"); body != "slow done" || !resp.Close {
		t.Fatalf("in-flight at shutdown: %q close=%v", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

package gyrenet_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"testing"
	"time"

	"github.com/gyre-io/gyre/gyrenet"
)

// pattern is a deterministic byte stream: byte i is pattern(i).
func pattern(i int) byte { return byte(i*7 + i>>10) }

// testMux serves:
//
//	GET  /           "Hello, World!"
//	GET  /big?n=N    N bytes of pattern
//	POST /sum        the SHA-256 of the request body, in hex
//	GET  /sleep?d=D  sleeps D, then answers "late"
func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "Hello, World!")
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := make([]byte, 32<<10)
		for off := 0; off < n; {
			k := min(len(buf), n-off)
			for i := range k {
				buf[i] = pattern(off + i)
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			off += k
		}
	})
	mux.HandleFunc("POST /sum", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
	})
	mux.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
		_, _ = io.WriteString(w, "late")
	})
	return mux
}

// serveHTTP runs srv on l until the test ends, then shuts it down.
func serveHTTP(t *testing.T, srv *http.Server, l net.Listener) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("http.Server.Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v, want http.ErrServerClosed", err)
		}
	})
}

// patternReader yields n bytes of pattern.
type patternReader struct{ off, n int }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := min(len(b), p.n-p.off)
	for i := range k {
		b[i] = pattern(p.off + i)
	}
	p.off += k
	return k, nil
}

func patternSum(n int) string {
	h := sha256.New()
	_, _ = io.Copy(h, &patternReader{n: n})
	return hex.EncodeToString(h.Sum(nil))
}

// checkClient runs the mux's requests through client against base: a
// keep-alive sequence that must reuse one connection, a 16 MiB upload and
// a 16 MiB download.
func checkClient(t *testing.T, client *http.Client, base string) {
	t.Helper()
	var reused int
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			reused++
		}
	}}
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", base+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET / #%d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "Hello, World!" {
			t.Fatalf("GET / #%d: %d %q %v", i, resp.StatusCode, body, err)
		}
	}
	if reused < 9 {
		t.Errorf("keep-alive: %d of 10 requests reused a connection, want 9", reused)
	}

	const big = 16 << 20
	resp, err := client.Post(base+"/sum", "application/octet-stream", &patternReader{n: big})
	if err != nil {
		t.Fatalf("POST /sum: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != patternSum(big) {
		t.Fatalf("POST /sum of 16 MiB: %d %q %v", resp.StatusCode, body, err)
	}

	resp, err = client.Get(fmt.Sprintf("%s/big?n=%d", base, big))
	if err != nil {
		t.Fatalf("GET /big: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != big || hex.EncodeToString(h.Sum(nil)) != patternSum(big) {
		t.Fatalf("GET /big: %d bytes, %v; want %d intact", n, err, big)
	}
}

func newClient() *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

// TestHTTPServe: http.Server.Serve on a gyrenet listener, with the net/http
// client: keep-alive, 16 MiB both ways.
func TestHTTPServe(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	serveHTTP(t, &http.Server{Handler: testMux()}, l)
	client := newClient()
	defer client.CloseIdleConnections()
	checkClient(t, client, "http://"+l.Addr().String())
}

// TestHTTPShutdownStopsReactors: after http.Server.Shutdown (which closes
// the listener and the idle connections) the reactors stop by themselves.
func TestHTTPShutdownStopsReactors(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	srv := &http.Server{Handler: testMux()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	client := newClient()
	for i := 0; i < 3; i++ {
		resp, err := client.Get("http://" + l.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-served
	client.CloseIdleConnections()
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the reactors did not stop after the listener and its connections closed")
	}
}

// rawConn is a client connection for byte-exact HTTP.
func rawHTTP(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// waitClosed reads from c until it closes and reports how long that took.
func waitClosed(t *testing.T, c net.Conn, br *bufio.Reader, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %v", limit)
	}
	return time.Since(start)
}

// TestHTTPReadTimeout: a client that stops in the middle of its headers is
// cut off at ReadTimeout.
func TestHTTPReadTimeout(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	serveHTTP(t, &http.Server{Handler: testMux(), ReadTimeout: 300 * time.Millisecond}, l)
	c, br := rawHTTP(t, l.Addr().String())
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	if d := waitClosed(t, c, br, 10*time.Second); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before ReadTimeout", d)
	}
}

// TestHTTPIdleTimeout: a keep-alive connection left idle is closed at
// IdleTimeout, after its response.
func TestHTTPIdleTimeout(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	serveHTTP(t, &http.Server{Handler: testMux(), IdleTimeout: 300 * time.Millisecond}, l)
	c, br := rawHTTP(t, l.Addr().String())
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "Hello, World!" || resp.Close {
		t.Fatalf("response %q, close %v", body, resp.Close)
	}
	if d := waitClosed(t, c, br, 10*time.Second); d < 200*time.Millisecond {
		t.Fatalf("closed after %v, before IdleTimeout", d)
	}
}

// TestHTTPWriteTimeout: a handler that answers after WriteTimeout has its
// response cut off; an answer in time gets through on another connection.
func TestHTTPWriteTimeout(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	serveHTTP(t, &http.Server{Handler: testMux(), WriteTimeout: 300 * time.Millisecond}, l)
	client := newClient()
	defer client.CloseIdleConnections()
	base := "http://" + l.Addr().String()
	resp, err := client.Get(base + "/sleep?d=600ms")
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && string(body) == "late" {
			t.Fatalf("a response written after WriteTimeout arrived: %q", body)
		}
	}
	resp, err = client.Get(base + "/sleep?d=10ms")
	if err != nil {
		t.Fatalf("in-time request: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "late" {
		t.Fatalf("in-time request: %q %v", body, err)
	}
}

// TestHTTPManyClients: 200 clients at once, each with its own connection.
func TestHTTPManyClients(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	serveHTTP(t, &http.Server{Handler: testMux()}, l)
	base := "http://" + l.Addr().String()
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		go func() {
			client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for j := 0; j < 5; j++ {
				resp, err := client.Get(base + "/big?n=70000")
				if err != nil {
					errs <- err
					return
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != 70000 {
					errs <- fmt.Errorf("read %d bytes: %v", n, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < 200; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

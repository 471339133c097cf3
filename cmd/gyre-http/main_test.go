package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/syncbuf"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestServe: every API answers GET / with 200 "Hello, World!"
// (text/plain), echoes a body, lists headers, and drains on cancel; the
// gyrenet one also over TLS.
func TestServe(t *testing.T) {
	for _, api := range []string{"native", "nethttp", "gyrenet", "gyrenet-tls"} {
		t.Run(api, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			started := make(chan net.Addr, 1)
			code := make(chan int, 1)
			var stderr syncbuf.Buffer
			args := []string{"-addr", "127.0.0.1:0", "-api", strings.TrimSuffix(api, "-tls")}
			scheme, tr := "http://", &http.Transport{}
			if strings.HasSuffix(api, "-tls") {
				args = append(args, "-tls")
				scheme = "https://"
				tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // the server's self-signed certificate
			}
			go func() { code <- run(ctx, args, &stderr, started) }()
			var addr net.Addr
			select {
			case addr = <-started:
			case c := <-code:
				t.Fatalf("exited with %d: %s", c, stderr.String())
			}
			base := scheme + addr.String()
			cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}

			resp, err := cl.Get(base + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "Hello, World!" || resp.Header.Get("Content-Type") != "text/plain" {
				t.Fatalf("GET /: %d %q %q", resp.StatusCode, b, resp.Header.Get("Content-Type"))
			}

			body := strings.Repeat("echo me ", 100000)
			resp, err = cl.Post(base+"/echo", "text/plain", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != body {
				t.Fatalf("echo: %d bytes back, %d sent", len(b), len(body))
			}

			req, _ := http.NewRequest("GET", base+"/headers", nil)
			req.Header.Set("X-Probe", "yes")
			resp, err = cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), "X-Probe: yes\n") {
				t.Fatalf("/headers: %q", b)
			}

			resp, err = cl.Get(base + "/nope")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Fatalf("/nope: %d", resp.StatusCode)
			}
			tr.CloseIdleConnections()
			cancel()
			if c := <-code; c != 0 {
				t.Fatalf("exit code %d: %s", c, stderr.String())
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-api", "grpc"}, {"-engine", "kqueue"}, {"-reactors", "0"}, {"extra"}, {"-tls"},
	} {
		var stderr bytes.Buffer
		if c := run(context.Background(), args, &stderr, nil); c != 2 {
			t.Errorf("%v: exit code %d, want 2", args, c)
		}
	}
}

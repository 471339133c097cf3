package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/quicbridge"
	"github.com/quic-go/quic-go"
)

// start runs a server on a loopback port and dials one client connection.
func start(t *testing.T) (*server, *quic.Conn) {
	t.Helper()
	s, err := listen(config{addr: "127.0.0.1:0", queue: 64, maxPayload: ingest.DefaultMaxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	tc, err := quicbridge.PinnedClientTLS(s.fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	tc.ServerName = "localhost"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, s.addr(), tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseWithError(0, "") })
	return s, c
}

// readReplies reads reply frames until EOF and returns them.
func readReplies(t *testing.T, str *quic.Stream) []ingest.Frame {
	t.Helper()
	_ = str.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(str)
	if err != nil {
		t.Fatalf("reading replies: %v", err)
	}
	dec := ingest.NewReplyDecoder()
	var out []ingest.Frame
	for len(b) > 0 {
		f, n, err := dec.Decode(b)
		if err != nil {
			t.Fatalf("bad reply: %v", err)
		}
		out = append(out, f)
		b = b[n:]
	}
	return out
}

// TestReuse pipelines messages on one long-lived stream, one of them
// larger than a read buffer; the ACKs are cumulative and the last one,
// followed by FIN, covers everything.
func TestReuse(t *testing.T) {
	s, c := start(t)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	go func() {
		var b []byte
		for seq := uint64(1); seq <= n; seq++ {
			size := 100
			if seq == 1000 {
				size = 3*readBufSize + 7
			}
			b, _ = ingest.AppendData(b, seq, make([]byte, size))
			if len(b) > 8<<10 || seq == n {
				if _, err := str.Write(b); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				b = b[:0]
			}
		}
		_ = str.Close()
	}()
	replies := readReplies(t, str)
	last := uint64(0)
	for _, f := range replies {
		if f.Kind != ingest.KindAck || f.Seq <= last {
			t.Fatalf("reply %v %d after ACK %d", f.Kind, f.Seq, last)
		}
		last = f.Seq
	}
	if last != n {
		t.Fatalf("last ACK %d, want %d", last, n)
	}
	if got := s.messages.Load(); got != n {
		t.Fatalf("consumer took %d messages, want %d", got, n)
	}
}

// TestPerMessage sends each message on a stream of its own (DATA, FIN),
// more streams than the server allows at once: each gets its ACK and FIN.
func TestPerMessage(t *testing.T) {
	s, c := start(t)
	const n = 40
	var wg sync.WaitGroup
	for seq := uint64(1); seq <= n; seq++ {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			str, err := c.OpenStreamSync(ctx)
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			b, _ := ingest.AppendData(nil, seq, []byte("hello"))
			if _, err := str.Write(b); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			_ = str.Close()
			if r := readReplies(t, str); len(r) != 1 || r[0].Kind != ingest.KindAck || r[0].Seq != seq {
				t.Errorf("seq %d: replies %+v", seq, r)
			}
		})
	}
	wg.Wait()
	if got := s.messages.Load(); got != n {
		t.Fatalf("consumer took %d messages, want %d", got, n)
	}
}

// TestMalformed: a frame breaking the protocol resets the stream with the
// NACK code; the connection stays usable.
func TestMalformed(t *testing.T) {
	_, c := start(t)
	str, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ingest.AppendData(nil, 5, nil)
	b, _ = ingest.AppendData(b, 5, nil) // seq does not increase
	if _, err := str.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = str.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(str)
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != quic.StreamErrorCode(ingest.NackMalformed) {
		t.Fatalf("read: %v, want a reset with code %d", err, ingest.NackMalformed)
	}
	str2, err := c.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ = ingest.AppendData(nil, 1, []byte("x"))
	if _, err := str2.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = str2.Close()
	if r := readReplies(t, str2); len(r) != 1 || r[0].Seq != 1 {
		t.Fatalf("replies %+v", r)
	}
}

// TestMetrics: the runtime metrics carry ingestd's names, and pprof can
// force a GC (what scripts/bench-quic.sh does before reading the heap).
func TestMetrics(t *testing.T) {
	s, _ := start(t)
	hs := httptest.NewServer(s.metricsHandler())
	defer hs.Close()
	for path, want := range map[string]string{
		"/metrics":                "go_memstats_heap_inuse_bytes",
		"/debug/pprof/heap?gc=1":  "",
		"/debug/pprof/goroutine":  "",
		"/metrics?second=request": "quicplain_connections_active 1",
	} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("%s: status %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

package http1

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKeepAliveNetHTTPClient: net/http's client reuses one connection for
// many requests; each answer is right.
func TestKeepAliveNetHTTPClient(t *testing.T) {
	s := startServer(t, Config{}, router{})
	cl := client(t)
	reused := 0
	for i := 0; i < 50; i++ {
		req, _ := http.NewRequest("GET", urlOf(s, "/target?i="+strconv.Itoa(i)), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			},
		}))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "/target?i=" + strconv.Itoa(i); string(b) != want || resp.StatusCode != 200 {
			t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, b, want)
		}
		if resp.ContentLength != int64(len(b)) {
			t.Fatalf("Content-Length %d for a %d-byte body", resp.ContentLength, len(b))
		}
		if resp.Header.Get("Date") == "" {
			t.Fatal("no Date field")
		}
	}
	if reused != 49 {
		t.Errorf("%d of 49 requests reused the connection", reused)
	}
	if a := s.Group().Stats().Accepted; a != 1 {
		t.Errorf("server accepted %d connections, want 1", a)
	}
}

// TestPipelining: many requests in one write, of every kind (GET, HEAD,
// buffered and streamed bodies, detached and streamed responses): the
// answers come back in request order, each right.
func TestPipelining(t *testing.T) {
	s := startServer(t, Config{}, router{})
	c := dial(t, s)
	var req bytes.Buffer
	type want struct{ method, body string }
	var wants []want
	for i := 0; i < 40; i++ {
		switch i % 8 {
		case 0:
			fmt.Fprintf(&req, "GET /target?i=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			wants = append(wants, want{"GET", fmt.Sprintf("/target?i=%d", i)})
		case 1:
			fmt.Fprintf(&req, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
			wants = append(wants, want{"HEAD", ""})
		case 2:
			body := strings.Repeat("b", i*10)
			fmt.Fprintf(&req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			wants = append(wants, want{"POST", body})
		case 3:
			fmt.Fprintf(&req, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")
			wants = append(wants, want{"POST", "abcde"})
		case 4:
			fmt.Fprintf(&req, "GET /detach HTTP/1.1\r\nHost: x\r\n\r\n")
			wants = append(wants, want{"GET", "later"})
		case 5:
			fmt.Fprintf(&req, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
			wants = append(wants, want{"GET", "piece0\npiece1\npiece2\npiece3\npiece4\n"})
		case 6:
			body := strings.Repeat("n", 100)
			fmt.Fprintf(&req, "POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			wants = append(wants, want{"POST", "ignored"})
		case 7:
			fmt.Fprintf(&req, "POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("L", 100000))
			wants = append(wants, want{"POST", "n=100000"})
		}
	}
	go func() { _, _ = c.Write(req.Bytes()) }()
	br := bufio.NewReader(c)
	for i, w := range wants {
		resp, body := readResponse(t, br, w.method)
		if resp.StatusCode != 200 || body != w.body {
			t.Fatalf("response %d: %d %q, want 200 %q", i, resp.StatusCode, trunc(body), trunc(w.body))
		}
		if w.method == "HEAD" && resp.ContentLength != 13 {
			t.Fatalf("HEAD: Content-Length %d, want 13", resp.ContentLength)
		}
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TestChunkedUploadNetHTTPClient: a body of unknown length goes chunked;
// the echo streams it back chunked, whole and in order, both ways at once
// (more than the output watermarks, so backpressure pauses reading).
func TestChunkedUploadNetHTTPClient(t *testing.T) {
	s := startServer(t, Config{}, router{})
	cl := client(t)
	const size = 8 << 20
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(i * 7)
	}
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < size; off += 10000 {
			if _, err := pw.Write(src[off:min(off+10000, size)]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, err := cl.Post(urlOf(s, "/echo"), "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("echo returned %d bytes, not the %d sent", len(got), size)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
	}
	// The same with a known length (streamed: over BufferBody).
	resp, err = cl.Post(urlOf(s, "/echo"), "application/octet-stream", bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if sha256.Sum256(got) != sha256.Sum256(src) {
		t.Fatalf("echo of a Content-Length body returned %d bytes, not the %d sent", len(got), size)
	}
}

// TestBackpressureBothWays: a client that sends a large body to the echo
// and reads nothing: the server stops reading (output watermarks) rather
// than buffer; its output stays within MaxOutput. Then the client reads
// and everything arrives.
func TestBackpressureBothWays(t *testing.T) {
	s := startServer(t, Config{}, router{})
	c := dial(t, s)
	const size = 32 << 20
	var wrote int64
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		_, err := fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		chunk := pattern[:32<<10]
		for n := 0; n < size && err == nil; n += len(chunk) {
			_, err = c.Write(chunk)
			mu.Lock()
			wrote += int64(len(chunk))
			mu.Unlock()
		}
		done <- err
	}()
	// The echo's output goes over the high-water mark and the reactor
	// stops reading; the writer then stalls once the kernel buffers on
	// both sides are full, short of the whole body.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for s.Group().Stats().Paused == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the reactor never paused reading (stats %+v)", s.Group().Stats())
		}
		<-tick.C
	}
	select {
	case err := <-done:
		t.Fatalf("the client wrote all %d bytes without reading: no backpressure (%v)", size, err)
	default:
	}
	mu.Lock()
	last := wrote
	mu.Unlock()
	st := s.Group().Stats()
	t.Logf("the client had written %d bytes when the reactor paused; server read %d, sent %d, paused %d times", last, st.BytesIn, st.BytesOut, st.Paused)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("read %d bytes of echo (%v), want %d", n, err, size)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestUntakenBodyNotRead: while the handler has not taken a streamed body,
// the server does not read it; once taken, it flows.
func TestUntakenBodyNotRead(t *testing.T) {
	handles := make(chan Handle, 1)
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		handles <- w.Detach()
	}))
	c := dial(t, s)
	const size = 16 << 20
	go func() {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		for n := 0; n < size; n += len(pattern) {
			if _, err := c.Write(pattern); err != nil {
				return
			}
		}
	}()
	h := <-handles
	in := waitSteady(t, "the server to stop reading the body", func() uint64 { return s.Group().Stats().BytesIn })
	if in > 4<<20 {
		t.Fatalf("the server read %d bytes of a body nobody took", in)
	}
	t.Logf("server read %d bytes while the body was not taken", in)
	var total int64
	var mu sync.Mutex
	if err := h.Post(func(w *Response, r *Request) {
		r.ReadBody(BodyFunc(func(w *Response, r *Request, chunk []byte, err error) {
			mu.Lock()
			total += int64(len(chunk))
			mu.Unlock()
			if err == io.EOF {
				_, _ = w.WriteString("got it")
				_ = w.End()
			}
		}))
	}); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, bufio.NewReader(c), "POST")
	if resp.StatusCode != 200 || body != "got it" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if total != size {
		t.Fatalf("body handler saw %d bytes, want %d", total, size)
	}
}

// TestExpectContinue: net/http's client waits for 100 Continue before
// sending; the server sends it when the handler takes the body, and not
// when the handler answers without it (then closes).
func TestExpectContinue(t *testing.T) {
	s := startServer(t, Config{}, router{})
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, size := range []int{100, 1 << 20} { // buffered, streamed
		req, _ := http.NewRequest("POST", urlOf(s, "/len"), bytes.NewReader(make([]byte, size)))
		req.Header.Set("Expect", "100-continue")
		got100 := false
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got100Continue: func() { got100 = true },
		}))
		start := time.Now()
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "n="+strconv.Itoa(size) || !got100 {
			t.Fatalf("size %d: got %q, 100 Continue seen: %v", size, b, got100)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("size %d: took %v: the client waited out its ExpectContinueTimeout", size, d)
		}
	}

	// Raw: a handler that rejects without reading gets no 100 and the
	// connection closes after the answer.
	c := dial(t, s)
	fmt.Fprintf(c, "POST /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	resp, body := readResponse(t, br, "POST")
	if resp.StatusCode != 401 || body != "no" || !resp.Close {
		t.Fatalf("reject: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	expectClosed(t, c, br)

	// Raw: a streamed body taken: 100 first, then the answer.
	c = dial(t, s)
	fmt.Fprintf(c, "POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\nExpect: 100-continue\r\n\r\n")
	br = bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q (%v), want 100 Continue", line, err)
	}
	if l, _ := br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("100 Continue followed by %q", l)
	}
	_, _ = c.Write(make([]byte, 200000))
	resp, body = readResponse(t, br, "POST")
	if resp.StatusCode != 200 || body != "n=200000" {
		t.Fatalf("after 100: %d %q", resp.StatusCode, body)
	}
}

// TestHead: a HEAD response has the head a GET would have (Content-Length
// of the body the handler wrote) and no body; the connection stays usable.
func TestHead(t *testing.T) {
	s := startServer(t, Config{}, router{})
	cl := client(t)
	for _, path := range []string{"/", "/big?n=300000"} {
		get, err := cl.Get(urlOf(s, path))
		if err != nil {
			t.Fatal(err)
		}
		gb, _ := io.ReadAll(get.Body)
		get.Body.Close()
		head, err := cl.Head(urlOf(s, path))
		if err != nil {
			t.Fatal(err)
		}
		hb, _ := io.ReadAll(head.Body)
		head.Body.Close()
		if len(hb) != 0 {
			t.Fatalf("HEAD %s returned a %d-byte body", path, len(hb))
		}
		if path == "/" && head.ContentLength != int64(len(gb)) {
			t.Fatalf("HEAD %s: Content-Length %d, GET body %d bytes", path, head.ContentLength, len(gb))
		}
	}
	// Raw, followed by another request on the same connection.
	c := dial(t, s)
	fmt.Fprintf(c, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	readResponse(t, br, "HEAD")
	if _, body := readResponse(t, br, "GET"); body != "Hello, World!" {
		t.Fatalf("GET after HEAD: %q", body)
	}
}

// TestHTTP10: HTTP/1.0 without keep-alive closes after the response;
// with keep-alive it stays open and the response says so; a response of
// unknown length is delimited by closing.
func TestHTTP10(t *testing.T) {
	s := startServer(t, Config{}, router{})

	c := dial(t, s)
	fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
	br := bufio.NewReader(c)
	resp, body := readResponse(t, br, "GET")
	if resp.Proto != "HTTP/1.0" || body != "Hello, World!" || resp.ContentLength != 13 {
		t.Fatalf("1.0: %s %q length %d", resp.Proto, body, resp.ContentLength)
	}
	expectClosed(t, c, br)

	c = dial(t, s)
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	br = bufio.NewReader(c)
	resp, body = readResponse(t, br, "GET")
	if body != "Hello, World!" || resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("1.0 keep-alive: %q, Connection %q", body, resp.Header.Get("Connection"))
	}
	fmt.Fprintf(c, "GET /target HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if _, body = readResponse(t, br, "GET"); body != "/target" {
		t.Fatalf("second 1.0 keep-alive request: %q", body)
	}
	// Unknown length on 1.0: no chunking, the close delimits the body.
	fmt.Fprintf(c, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body = readResponse(t, br, "GET")
	if body != "piece0\npiece1\npiece2\npiece3\npiece4\n" || resp.ContentLength != -1 || len(resp.TransferEncoding) > 0 {
		t.Fatalf("1.0 stream: %q length %d TE %v", body, resp.ContentLength, resp.TransferEncoding)
	}
	expectClosed(t, c, br)
}

// TestConnectionClose: a request with Connection: close, and a handler
// that sets it, close the connection after the response.
func TestConnectionClose(t *testing.T) {
	s := startServer(t, Config{}, router{})
	for _, tc := range []struct{ req, body string }{
		{"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "Hello, World!"},
		{"GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "bye"},
	} {
		c := dial(t, s)
		_, _ = io.WriteString(c, tc.req)
		br := bufio.NewReader(c)
		resp, body := readResponse(t, br, "GET")
		if body != tc.body || !resp.Close {
			t.Fatalf("%q: %q close=%v", tc.req, body, resp.Close)
		}
		expectClosed(t, c, br)
	}
}

// TestRequestView: method, target, path, query, header lookups.
func TestRequestView(t *testing.T) {
	type seen struct {
		method, target, path, query, host, ua, missing string
		n                                              int
		names                                          []string
		proto                                          int
		keep                                           bool
		v                                              string
		ok                                             bool
	}
	got := make(chan seen, 1)
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		var sn seen
		sn.method, sn.target, sn.path, sn.query = r.Method(), string(r.Target()), string(r.Path()), string(r.RawQuery())
		sn.host, sn.ua, sn.missing = string(r.Host()), string(r.Header("USER-agent")), string(r.Header("X-None"))
		sn.n = r.NumHeaders()
		for i := 0; i < r.NumHeaders(); i++ {
			k, _ := r.HeaderAt(i)
			sn.names = append(sn.names, string(k))
		}
		sn.proto, sn.keep = r.ProtoMinor(), r.KeepAlive()
		v, ok := r.QueryValue("b")
		sn.v, sn.ok = string(v), ok
		got <- sn
	}))
	c := dial(t, s)
	fmt.Fprintf(c, "PATCH http://example.com/a/b%%20c?x=1&b=2&c HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  tester/1 \r\nX-Empty:\r\n\r\n")
	sn := <-got
	want := seen{method: "PATCH", target: "http://example.com/a/b%20c?x=1&b=2&c", path: "/a/b%20c", query: "x=1&b=2&c",
		host: "example.com", ua: "tester/1", n: 3, names: []string{"Host", "User-Agent", "X-Empty"}, proto: 1, keep: true, v: "2", ok: true}
	if fmt.Sprint(sn) != fmt.Sprint(want) {
		t.Fatalf("request view\n got %+v\nwant %+v", sn, want)
	}
	readResponse(t, bufio.NewReader(c), "PATCH")
}

// TestResponseFraming: fixed length set ahead, a short body (closes), a
// body larger than the response buffer (chunked), statuses without body.
func TestResponseFraming(t *testing.T) {
	s := startServer(t, Config{}, router{})
	cl := client(t)

	resp, err := cl.Get(urlOf(s, "/fixed"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "0123456789" || resp.ContentLength != 10 {
		t.Fatalf("/fixed: %q length %d", b, resp.ContentLength)
	}

	resp, err = cl.Get(urlOf(s, "/big?n=1000000"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 1000000 || resp.ContentLength != -1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("/big: %d bytes, length %d, TE %v", len(b), resp.ContentLength, resp.TransferEncoding)
	}

	for _, code := range []int{204, 304} {
		c := dial(t, s)
		fmt.Fprintf(c, "GET /status?code=%d HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", code)
		br := bufio.NewReader(c)
		resp, body := readResponse(t, br, "GET")
		if resp.StatusCode != code || body != "" || resp.Header.Get("X-Write-Error") != ErrBodyNotAllowed.Error() {
			t.Fatalf("%d: got %d %q %v", code, resp.StatusCode, body, resp.Header)
		}
		if _, body = readResponse(t, br, "GET"); body != "Hello, World!" {
			t.Fatalf("after %d: %q", code, body)
		}
	}

	c := dial(t, s)
	fmt.Fprintf(c, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err != io.ErrUnexpectedEOF {
		t.Fatalf("short body: read error %v, want unexpected EOF", err)
	}
}

// TestHandlerPanic: a panic aborts that connection only; the server and
// other connections go on.
func TestHandlerPanic(t *testing.T) {
	s := startServer(t, Config{}, router{})
	cl := client(t)
	if _, err := cl.Get(urlOf(s, "/panic")); err == nil {
		t.Fatal("a panicking handler's request succeeded")
	}
	resp, err := cl.Get(urlOf(s, "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestBodyErrors: a malformed chunked body, and bodies over MaxBodyBytes:
// the handler hears the error, the server answers 400 or 413, and closes.
func TestBodyErrors(t *testing.T) {
	s := startServer(t, Config{MaxBodyBytes: 1000}, router{})
	for _, tc := range []struct {
		req  string
		code int
	}{
		{"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\nzz\r\n", 400},
		{"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX", 400},
		{"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413},
		{"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + strings.Repeat("x", 1000) + "\r\n1\r\nx\r\n0\r\n\r\n", 413},
	} {
		c := dial(t, s)
		_, _ = io.WriteString(c, tc.req)
		br := bufio.NewReader(c)
		resp, _ := readResponse(t, br, "POST")
		if resp.StatusCode != tc.code || !resp.Close {
			t.Fatalf("%q: %d close=%v, want %d and close", trunc(tc.req), resp.StatusCode, resp.Close, tc.code)
		}
		expectClosed(t, c, br)
	}
}

// TestShutdownDrains: Shutdown closes idle connections at once, lets a
// request in progress finish (its response says Connection: close), and
// returns once it has.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	slowStarted := make(chan struct{}, 1)
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		if string(r.Path()) != "/slow" {
			_, _ = w.WriteString("fast")
			return
		}
		h := w.Detach()
		slowStarted <- struct{}{}
		go func() {
			<-release
			_ = h.Post(func(w *Response, r *Request) {
				_, _ = w.WriteString("slow done")
				_ = w.End()
			})
		}()
	}))
	idle := dial(t, s)
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	ibr := bufio.NewReader(idle)
	readResponse(t, ibr, "GET")

	busy := dial(t, s)
	fmt.Fprintf(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-slowStarted

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(t.Context()) }()
	expectClosed(t, idle, ibr)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	br := bufio.NewReader(busy)
	resp, body := readResponse(t, br, "GET")
	if body != "slow done" || !resp.Close {
		t.Fatalf("in-flight request at shutdown: %q close=%v", body, resp.Close)
	}
	expectClosed(t, busy, br)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

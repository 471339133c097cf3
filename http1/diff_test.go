package http1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// diffCase is one raw request sent to both servers. deliberate names the
// RFC 9112 reason when http1 answers differently from net/http on
// purpose (docs/http.md lists them); want is then http1's expected
// outcome.
type diffCase struct {
	name       string
	raw        string
	deliberate string
	want       outcome
}

// outcome is what a server did with a raw request: the status of its
// first response (0: none) and whether the connection served a second
// request afterwards.
type outcome struct {
	status int
	open   bool
}

func (o outcome) String() string { return fmt.Sprintf("%d open=%v", o.status, o.open) }

const okGet = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

func diffCases() []diffCase {
	post := func(headers, body string) string {
		return "POST /len HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n" + body
	}
	chunked := func(body string) string { return post("Transfer-Encoding: chunked\r\n", body) }
	many := ""
	for i := 0; i < 150; i++ {
		many += "X-H" + strconv.Itoa(i) + ": v\r\n"
	}
	return []diffCase{
		{name: "valid GET", raw: okGet},
		{name: "valid POST", raw: post("Content-Length: 5\r\n", "hello")},
		{name: "valid chunked", raw: chunked("5\r\nhello\r\n0\r\n\r\n")},
		{name: "chunked with extensions", raw: chunked("5;a=b;c=\"q s\"\r\nhello\r\n0\r\n\r\n")},
		{name: "chunked with trailers", raw: chunked("5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")},
		{name: "identical Content-Lengths", raw: post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello")},
		{name: "LF line endings", raw: "POST /len HTTP/1.1\nHost: x\nContent-Length: 2\n\nhi"},
		{name: "absolute-form target", raw: "GET http://x/len HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "HTTP/1.2 served as 1.1", raw: "GET / HTTP/1.2\r\nHost: x\r\n\r\n"},
		{name: "HTTP/1.0 Expect ignored", raw: "POST /len HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"},

		// Smuggling and framing.
		{name: "Content-Length with Transfer-Encoding", raw: post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
			deliberate: "RFC 9112 6.3 item 3: treat as an error and close", want: outcome{400, false}},
		{name: "differing Content-Lengths", raw: post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")},
		{name: "Content-Length list", raw: post("Content-Length: 5, 5\r\n", "hello")},
		{name: "Content-Length with sign", raw: post("Content-Length: +5\r\n", "hello")},
		{name: "Content-Length not a number", raw: post("Content-Length: 5x\r\n", "hello")},
		{name: "Content-Length empty", raw: post("Content-Length: \r\n", "")},
		{name: "Content-Length overflow", raw: post("Content-Length: 99999999999999999999\r\n", "")},
		{name: "Transfer-Encoding gzip, chunked", raw: post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n")},
		{name: "Transfer-Encoding identity", raw: post("Transfer-Encoding: identity\r\n", "")},
		{name: "two Transfer-Encoding fields", raw: post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n")},
		{name: "Transfer-Encoding in HTTP/1.0", raw: "POST /len HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
			deliberate: "RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing", want: outcome{400, false}},
		{name: "chunk size not hex", raw: chunked("zz\r\nhello\r\n0\r\n\r\n")},
		{name: "chunk size 17 digits", raw: chunked("00000000000000005\r\nhello\r\n0\r\n\r\n")},
		{name: "chunk size negative", raw: chunked("-5\r\nhello\r\n0\r\n\r\n")},
		{name: "chunk line bare LF", raw: chunked("5\nhello\r\n0\r\n\r\n")},
		{name: "chunk data without CRLF", raw: chunked("5\r\nhelloXX0\r\n\r\n")},
		{name: "chunk extension with a control byte", raw: chunked("5;a\x01\r\nhello\r\n0\r\n\r\n"),
			deliberate: "RFC 9112 7.1.1: chunk-ext grammar (net/http ignores everything after ';')", want: outcome{400, false}},
		{name: "chunk extension without a name", raw: chunked("5;=x\r\nhello\r\n0\r\n\r\n"),
			deliberate: "RFC 9112 7.1.1: chunk-ext grammar", want: outcome{400, false}},
		{name: "chunk extension unterminated quote", raw: chunked("5;a=\"x\r\nhello\r\n0\r\n\r\n"),
			deliberate: "RFC 9112 7.1.1: chunk-ext grammar", want: outcome{400, false}},

		// Field syntax.
		{name: "obs-fold", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n",
			deliberate: "RFC 9112 5.2: reject obs-fold with 400 (net/http unfolds it, also allowed)", want: outcome{400, false}},
		{name: "whitespace before colon", raw: "GET / HTTP/1.1\r\nHost : x\r\n\r\n"},
		{name: "whitespace before first field", raw: "GET / HTTP/1.1\r\n Host: x\r\n\r\n"},
		{name: "bare CR in field value", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"},
		{name: "bare CR in target", raw: "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "NUL in field value", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"},
		{name: "empty field name", raw: "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n"},
		{name: "field name not a token", raw: "GET / HTTP/1.1\r\nHost: x\r\nX(a): v\r\n\r\n"},
		{name: "field without colon", raw: "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"},
		{name: "missing Host", raw: "GET / HTTP/1.1\r\n\r\n"},
		{name: "two Host fields", raw: "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
		{name: "invalid Host", raw: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{name: "Expect other than 100-continue", raw: "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n"},

		// Request line.
		{name: "HTTP/2.0", raw: "GET / HTTP/2.0\r\nHost: x\r\n\r\n"},
		{name: "HTTP/1.10", raw: "GET / HTTP/1.10\r\nHost: x\r\n\r\n"},
		{name: "lower-case version", raw: "GET / http/1.1\r\nHost: x\r\n\r\n"},
		{name: "method not a token", raw: "G@T / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "two spaces", raw: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "empty line before request line", raw: "\r\n" + okGet,
			deliberate: "RFC 9112 2.2: SHOULD ignore empty lines before a request line (net/http does only after a POST)", want: outcome{200, true}},

		// Limits (net/http configured with the same MaxHeaderBytes, 64 KiB).
		{name: "request line over MaxRequestLine, head within", raw: "GET /" + strings.Repeat("a", 10<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
			deliberate: "a request-line limit of its own (8 KiB): 414 (net/http only bounds the whole head)", want: outcome{414, false}},
		{name: "request line over the head limit", raw: "GET /" + strings.Repeat("a", 100<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
			deliberate: "414 for a request line too long (net/http: 431 for any head too large)", want: outcome{414, false}},
		{name: "head over MaxHeaderBytes", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 100<<10) + "\r\n\r\n"},
		{name: "more fields than MaxHeaders", raw: "GET / HTTP/1.1\r\nHost: x\r\n" + many + "\r\n",
			deliberate: "a field count limit (100): 431 (net/http has none)", want: outcome{431, false}},
	}
}

// lenHandler is the net/http twin of router's /len: it reads the body
// and answers with its length, 400 if the body fails.
func lenHandler(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(400)
		return
	}
	fmt.Fprintf(w, "n=%d", len(b))
}

// TestDifferentialNetHTTP sends the same raw bytes to net/http's server
// and to http1 on loopback and compares the status and whether the
// connection then serves another request. They must agree except where
// http1 follows RFC 9112 and net/http does not (each such case says why).
func TestDifferentialNetHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(lenHandler), MaxHeaderBytes: DefaultMaxHeaderBytes,
		ErrorLog: nil, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		r.SetValue(new(int64))
		r.ReadBody(countBody)
	}))
	for _, tc := range diffCases() {
		t.Run(tc.name, func(t *testing.T) {
			std := probe(t, ln.Addr().String(), tc.raw)
			got := probe(t, s.Addr().String(), tc.raw)
			switch {
			case tc.deliberate == "" && got != std:
				t.Errorf("http1 %v, net/http %v", got, std)
			case tc.deliberate != "" && got != tc.want:
				t.Errorf("http1 %v, want %v (%s); net/http %v", got, tc.want, tc.deliberate, std)
			case tc.deliberate != "" && got == std:
				t.Logf("listed as a deliberate difference, but net/http agrees now: %v", std)
			}
			if testing.Verbose() {
				t.Logf("http1 %v, net/http %v", got, std)
			}
		})
	}
}

// probe sends raw, reads the first response, then sends a plain GET and
// reports whether it is answered.
func probe(t *testing.T, addr, raw string) outcome {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	method := "GET"
	if strings.HasPrefix(raw, "POST") {
		method = "POST"
	}
	var o outcome
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return o
	}
	o.status = resp.StatusCode
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The follow-up: answered means the connection stayed open.
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, okGet); err != nil {
		return o
	}
	if resp, err = http.ReadResponse(br, nil); err == nil {
		o.open = resp.StatusCode == 200
		resp.Body.Close()
	}
	return o
}

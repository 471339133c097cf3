package http1

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestNetHTTPTrailers: trailers both ways through the net/http face, the
// same as net/http's server: a request's declared keys are in
// Request.Trailer (nil values) before the body is read and have their
// values after io.EOF; a response's trailers (declared with the Trailer
// field, or with http.TrailerPrefix) reach the client after the body.
func TestNetHTTPTrailers(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, declared := r.Trailer["X-Checksum"]
		before := r.Trailer.Get("X-Checksum")
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(200)
		fmt.Fprintf(w, "body=%s declared=%v before=%q after=%q", body, declared, before, r.Trailer.Get("X-Checksum"))
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	})
	gyre := startNetHTTP(t, Config{}, &NetHTTP{Handler: h})
	ref := httptest.NewServer(h)
	defer ref.Close()
	cl := client(t)
	var results []string
	for _, base := range []string{urlOf(gyre, "/"), ref.URL + "/"} {
		req, err := http.NewRequest("POST", base, io.NopCloser(strings.NewReader("hello")))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1 // chunked
		req.Trailer = http.Header{"X-Checksum": nil}
		req.Body = &trailerSetter{r: strings.NewReader("hello"), req: req}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, fmt.Sprintf("%d %s | X-Sum=%q X-Late=%q chunked=%v",
			resp.StatusCode, b, resp.Trailer.Get("X-Sum"), resp.Trailer.Get("X-Late"), len(resp.TransferEncoding) > 0))
	}
	want := `200 body=hello declared=true before="" after="abc" | X-Sum="42" X-Late="late" chunked=true`
	if results[1] != want {
		t.Fatalf("net/http gives %s; the test expects %s", results[1], want)
	}
	if results[0] != results[1] {
		t.Fatalf("gyre:     %s\nnet/http: %s", results[0], results[1])
	}
}

// trailerSetter is a request body that sets the request's trailer value
// when it reaches its end, as net/http's client expects.
type trailerSetter struct {
	r   io.Reader
	req *http.Request
}

func (s *trailerSetter) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.req.Trailer.Set("X-Checksum", "abc")
	}
	return n, err
}

func (s *trailerSetter) Close() error { return nil }

// TestNativeTrailers: the native API reads a request's trailers once the
// body has ended and sends trailers after a chunked response body.
func TestNativeTrailers(t *testing.T) {
	s := startServer(t, Config{}, HandlerFunc(func(w *Response, r *Request) {
		var got []byte
		r.ReadBody(BodyFunc(func(w *Response, r *Request, chunk []byte, err error) {
			got = append(got, chunk...)
			if err != io.EOF {
				return
			}
			w.AddHeader("Trailer", "X-Echo")
			w.WriteString("got " + string(got))
			w.AddTrailer("X-Echo", string(r.Trailer("x-checksum")))
			w.AddTrailer("Content-Length", "1") // framing: dropped
			_ = w.End()
		}))
	}))
	c := dial(t, s)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n" +
		"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "got hello" || resp.Trailer.Get("X-Echo") != "abc" || resp.Trailer.Get("Content-Length") != "" {
		t.Fatalf("body %q trailer %v", b, resp.Trailer)
	}
}

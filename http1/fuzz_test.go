package http1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

var fuzzLimits = func() limits {
	l, err := (&Config{}).limits()
	if err != nil {
		panic(err)
	}
	return l
}()

// FuzzHead: scanning a head fed a byte at a time finds what one pass
// finds; and whatever head parse accepts, net/http's ReadRequest accepts
// too, with the same method, target, Host and body framing (parse is
// stricter in places, never looser).
func FuzzHead(f *testing.F) {
	for _, tc := range diffCases() {
		if len(tc.raw) <= 4096 { // the large ones make minimizing slow
			f.Add([]byte(tc.raw))
		}
	}
	f.Add([]byte("GET /a%20b?c=%zz HTTP/1.1\r\nHost: h:80\r\nContent-Length: 3\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var one headScan
		end, st := scanHead(b, &one, fuzzLimits.maxLine, fuzzLimits.maxHead)
		var inc headScan
		end2, st2 := 0, needMore
		for i := 1; i <= len(b) && st2 == needMore; i++ {
			end2, st2 = scanHead(b[:i], &inc, fuzzLimits.maxLine, fuzzLimits.maxHead)
		}
		if st == parsedOK && (st2 != parsedOK || end2 != end) {
			t.Fatalf("one pass: end %d status %d; byte by byte: end %d status %d", end, st, end2, st2)
		}
		if st != parsedOK {
			return
		}
		var r Request
		fields := make([]field, fuzzLimits.maxHeaders)
		if r.parse(b[:end], &fuzzLimits, fields) != parsedOK {
			return
		}
		if len(r.target) == 0 || r.target[0] != '/' {
			return // absolute and authority forms: net/http parses their hosts further
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:end])))
		if err != nil {
			t.Fatalf("http1 accepts, net/http refuses (%v):\n%q", err, b[:end])
		}
		if req.Method != r.Method() || req.RequestURI != string(r.target) {
			t.Fatalf("method/target %q %q, net/http %q %q", r.Method(), r.target, req.Method, req.RequestURI)
		}
		if req.Host != string(r.host) && r.minor >= 1 {
			t.Fatalf("host %q, net/http %q", r.host, req.Host)
		}
		chunked := len(req.TransferEncoding) > 0
		if chunked != r.chunked || (!chunked && req.ContentLength != max(r.contentLength, 0)) {
			t.Fatalf("framing chunked=%v length %d, net/http chunked=%v length %d", r.chunked, r.contentLength, chunked, req.ContentLength)
		}
		if req.Close == r.keepAlive {
			t.Fatalf("keep-alive %v, net/http close %v", r.keepAlive, req.Close)
		}
	})
}

// FuzzChunked: a chunked body decoded in one pass and a byte at a time
// gives the same data and outcome; what the decoder accepts, net/http's
// chunked reader reads to the same data.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;a=b;c=\"q s\"\r\nhello\r\n6; x \r\n world\r\n0\r\nX-T: 1\r\n\r\n", "6 ;x\r\n world\r\n0\r\n\r\n",
		"zz\r\n", "5\nhello", "00000000000000005\r\nhello\r\n0\r\n\r\n",
		"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		data1, done1, err1 := decodeAll(b, len(b))
		data2, done2, err2 := decodeAll(b, 1)
		if !bytes.Equal(data1, data2) || done1 != done2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("one pass: %q done=%v err=%v; byte by byte: %q done=%v err=%v", data1, done1, err1, data2, done2, err2)
		}
		if !done1 {
			return
		}
		got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("http1 decodes %q, net/http fails: %v", data1, err)
		}
		if !bytes.Equal(got, data1) {
			t.Fatalf("http1 decodes %q, net/http %q", data1, got)
		}
	})
}

// decodeAll feeds b to a chunk decoder step pieces at a time, as the
// reactor presents input: what a step leaves unconsumed comes back with
// the next piece.
func decodeAll(b []byte, step int) (data []byte, done bool, err error) {
	var d chunkDecoder
	pending := 0 // b[pending:avail] is unconsumed
	for avail := min(step, len(b)); ; {
		res := d.step(b[pending:avail], &fuzzLimits)
		data = append(data, res.data...)
		pending += res.n
		if res.err != nil {
			return data, false, res.err
		}
		if res.done {
			return data, true, nil
		}
		if res.n == 0 && len(res.data) == 0 {
			if avail == len(b) {
				return data, false, nil
			}
			avail = min(avail+step, len(b))
		}
	}
}

// TestParseCases checks parse's answers on heads the differential test
// does not reach (it needs no server).
func TestParseCases(t *testing.T) {
	fields := make([]field, 100)
	for _, tc := range []struct {
		head string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", parsedOK},
		{"GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n", parsedOK},
		{"GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"GET /a%2 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"GET /?q=%zz HTTP/1.1\r\nHost: x\r\n\r\n", parsedOK}, // net/http does not check the query
		{"CONNECT example.com:443 HTTP/1.1\r\n\r\n", parsedOK},
		{"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", parsedOK},
		{"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", parsedOK},
		{"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501},
		{"GET / HTTP/1.1\r\nHost: x\r\nX:\tvalue\t\r\n\r\n", parsedOK},
	} {
		var r Request
		var st headScan
		end, s := scanHead([]byte(tc.head), &st, 8192, 65536)
		if s == parsedOK {
			s = r.parse([]byte(tc.head)[:end], &fuzzLimits, fields)
		}
		if s != tc.want {
			t.Errorf("%q: %d, want %d", strings.TrimSpace(tc.head), s, tc.want)
		}
	}
}

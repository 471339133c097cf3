package http1

import (
	"net/http"
	"strconv"
	"time"
)

// statusLines[minor][code] is "HTTP/1.x code reason\r\n" for every code
// with a reason phrase net/http knows; the others are built on demand
// (with an empty reason phrase, which RFC 9112 section 4 allows).
var statusLines [2][600][]byte

func init() {
	for minor := range statusLines {
		for code := 100; code < 600; code++ {
			text := http.StatusText(code)
			if text == "" {
				continue
			}
			statusLines[minor][code] = []byte("HTTP/1." + strconv.Itoa(minor) + " " + strconv.Itoa(code) + " " + text + "\r\n")
		}
	}
}

// appendStatusLine appends the status line for code to b.
func appendStatusLine(b []byte, minor uint8, code int) []byte {
	m := min(int(minor), 1)
	if code < 600 && statusLines[m][code] != nil {
		return append(b, statusLines[m][code]...)
	}
	b = append(b, "HTTP/1."...)
	b = append(b, byte('0'+m), ' ')
	b = strconv.AppendInt(b, int64(code), 10)
	return append(b, " \r\n"...)
}

// errorResponses[code] is the whole response the server sends itself for
// a request it refuses (the connection is closed after it), in the form
// net/http uses.
var errorResponses = map[int][]byte{}

func init() {
	for _, code := range []int{400, 408, 413, 414, 417, 431, 500, 501, 505} {
		text := strconv.Itoa(code) + " " + http.StatusText(code)
		errorResponses[code] = []byte("HTTP/1.1 " + text +
			"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
			strconv.Itoa(len(text)) + "\r\n\r\n" + text)
	}
}

var continueResponse = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// dateCache formats the Date field once per second, per reactor.
type dateCache struct {
	sec int64
	buf []byte // "Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n"
}

func (d *dateCache) get(now time.Time) []byte {
	if s := now.Unix(); s != d.sec || d.buf == nil {
		d.sec = s
		d.buf = append(d.buf[:0], "Date: "...)
		d.buf = now.UTC().AppendFormat(d.buf, http.TimeFormat)
		d.buf = append(d.buf, "\r\n"...)
	}
	return d.buf
}

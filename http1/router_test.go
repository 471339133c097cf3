package http1

import (
	"errors"
	"io"
	"strconv"
	"time"
)

// router is the handler most tests serve: one behaviour per path.
type router struct{}

func (router) ServeHTTP1(w *Response, r *Request) {
	switch string(r.Path()) {
	case "/":
		w.AddHeader("Content-Type", "text/plain")
		_, _ = w.WriteString("Hello, World!")
	case "/echo":
		// Streams the body back as it arrives.
		w.AddHeader("Content-Type", "application/octet-stream")
		r.ReadBody(echoBody)
	case "/len":
		// Reads the body and answers with its length.
		r.SetValue(new(int64))
		r.ReadBody(countBody)
	case "/target":
		_, _ = w.Write(r.Target())
	case "/headers":
		w.AddHeader("X-Num", strconv.Itoa(r.NumHeaders()))
		_, _ = w.Write(r.Header("x-test"))
	case "/query":
		v, ok := r.QueryValue("a")
		_, _ = w.WriteString(strconv.FormatBool(ok) + ":" + string(v))
	case "/status":
		v, _ := r.QueryValue("code")
		code, _ := strconv.Atoi(string(v))
		w.SetStatus(code)
		if _, err := w.WriteString("body"); err != nil {
			w.AddHeader("X-Write-Error", err.Error())
		}
	case "/noread":
		// Answers without reading the body.
		_, _ = w.WriteString("ignored")
	case "/reject":
		w.SetStatus(401)
		_, _ = w.WriteString("no")
	case "/detach":
		// Answers from another goroutine.
		h := w.Detach()
		go func() {
			time.Sleep(20 * time.Millisecond)
			_ = h.Post(func(w *Response, r *Request) {
				_, _ = w.WriteString("later")
				_ = w.End()
			})
		}()
	case "/stream":
		// A chunked response written from another goroutine in pieces.
		h := w.Detach()
		go func() {
			for i := 0; i < 5; i++ {
				last := i == 4
				n := i
				for h.Post(func(w *Response, r *Request) {
					_, _ = w.WriteString("piece" + strconv.Itoa(n) + "\n")
					if last {
						_ = w.End()
					}
				}) != nil {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	case "/fixed":
		// Declared length, head sent before the body.
		w.SetContentLength(10)
		_ = w.Flush()
		_, _ = w.WriteString("0123456789")
	case "/short":
		// Declares more than it writes: the connection must close.
		w.SetContentLength(10)
		_, _ = w.WriteString("01234")
	case "/big":
		// A body larger than the response buffer: streamed chunked.
		n, _ := strconv.Atoi(string(valueOr(r, "n", "1000000")))
		writeBig(w, n)
	case "/close":
		w.AddHeader("Connection", "close")
		_, _ = w.WriteString("bye")
	case "/panic":
		panic("test panic")
	default:
		w.SetStatus(404)
		_, _ = w.WriteString("not found")
	}
}

func valueOr(r *Request, name, def string) []byte {
	if v, ok := r.QueryValue(name); ok {
		return v
	}
	return []byte(def)
}

var pattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

func writeBig(w *Response, n int) {
	for n > 0 {
		k := min(n, len(pattern))
		if _, err := w.Write(pattern[:k]); err != nil {
			return
		}
		n -= k
	}
}

var echoBody = BodyFunc(func(w *Response, r *Request, chunk []byte, err error) {
	if len(chunk) > 0 {
		if _, werr := w.Write(chunk); werr != nil {
			panic("echo write: " + werr.Error())
		}
	}
})

var countBody = BodyFunc(func(w *Response, r *Request, chunk []byte, err error) {
	n := r.Value().(*int64)
	*n += int64(len(chunk))
	switch {
	case err == io.EOF:
		_, _ = w.WriteString("n=" + strconv.FormatInt(*n, 10))
	case errors.Is(err, ErrMalformedBody), errors.Is(err, ErrBodyTooLarge):
		// Let the server answer.
	}
})

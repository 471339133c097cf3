package http1_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gyre-io/gyre/http1"
	"github.com/gyre-io/gyre/reactor"
)

// hello answers every request inline on the reactor.
func hello(w *http1.Response, r *http1.Request) {
	switch string(r.Path()) {
	case "/":
		w.AddHeader("Content-Type", "text/plain")
		_, _ = w.WriteString("Hello, World!")
	case "/echo":
		// The body streams back as it arrives.
		r.ReadBody(echo)
	default:
		w.SetStatus(404)
	}
}

var echo = http1.BodyFunc(func(w *http1.Response, r *http1.Request, chunk []byte, err error) {
	_, _ = w.Write(chunk)
})

// A server on the native API.
func Example() {
	s := &http1.Server{
		Handler: http1.HandlerFunc(hello),
		Config:  http1.Config{Reactor: reactor.Config{Reactors: 1}},
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Shutdown(context.Background())

	resp, err := http.Get("http://" + s.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(b))

	resp, err = http.Post("http://"+s.Addr().String()+"/echo", "text/plain", strings.NewReader("ping"))
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(b))
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// 200 OK Hello, World!
	// 200 OK ping
}

// A net/http Handler on gyre's reactors.
func ExampleNetHTTP() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s", r.URL.Query().Get("name"))
	})
	s := &http1.Server{
		Handler: &http1.NetHTTP{Handler: mux},
		Config:  http1.Config{Reactor: reactor.Config{Reactors: 1}},
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Shutdown(context.Background())

	resp, err := http.Get("http://" + s.Addr().String() + "/hello?name=gyre")
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	fmt.Println(string(b))
	// Output: hello, gyre
}

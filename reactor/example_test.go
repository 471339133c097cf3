package reactor_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gyre-io/gyre/acceptor"
	"github.com/gyre-io/gyre/reactor"
)

// upper answers each line with the line in upper case. It consumes only
// complete lines: the runtime keeps a partial line and presents it again
// with the bytes that follow.
type upper struct{ reactor.BaseHandler }

func (upper) OnData(c *reactor.Conn, b []byte) int {
	consumed := 0
	for i, ch := range b {
		if ch != '\n' {
			continue
		}
		line := b[consumed : i+1]
		out := make([]byte, len(line))
		for j, x := range line {
			if 'a' <= x && x <= 'z' {
				x -= 'a' - 'A'
			}
			out[j] = x
		}
		_, _ = c.Write(out)
		consumed = i + 1
	}
	return consumed
}

// A complete server: reactors running a handler, an acceptor feeding them,
// and a graceful shutdown.
func Example() {
	g, err := reactor.NewGroup(reactor.Config{Reactors: 2}, upper{})
	if err != nil {
		fmt.Println(err) // e.g. io_uring disabled: the error says how to enable it
		return
	}
	a, err := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	if err != nil {
		fmt.Println(err)
		return
	}

	c, _ := net.Dial("tcp", a.Addrs()[0].String())
	_, _ = c.Write([]byte("hello, "))
	_, _ = c.Write([]byte("gyre\n"))
	reply := make([]byte, 12)
	_, _ = io.ReadFull(c, reply)
	fmt.Printf("%q\n", reply)
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(g.Shutdown(ctx))
	// Output:
	// "HELLO, GYRE\n"
	// <nil>
}

// HandlerFunc turns a function into a handler when only data matters.
func ExampleHandlerFunc() {
	echo := reactor.HandlerFunc(func(c *reactor.Conn, b []byte) int {
		if _, err := c.Write(b); err != nil {
			return 0 // output full: keep the bytes; they come again on resume
		}
		return len(b)
	})
	g, err := reactor.NewGroup(reactor.Config{Reactors: 1}, echo)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	a, _ := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	c, _ := net.Dial("tcp", a.Addrs()[0].String())
	defer c.Close()
	_, _ = c.Write([]byte("ping"))
	buf := make([]byte, 4)
	_, _ = io.ReadFull(c, buf)
	fmt.Println(string(buf))
	// Output: ping
}

// AsyncWrite lets any goroutine write to a connection: the bytes are
// copied and queued on the reactor's inbox, in call order.
func ExampleConn_AsyncWrite() {
	opened := make(chan *reactor.Conn, 1)
	h := &openNotifier{opened: opened}
	g, err := reactor.NewGroup(reactor.Config{Reactors: 1}, h)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	a, _ := acceptor.Listen(acceptor.Config{Addrs: []string{"127.0.0.1:0"}}, g)
	client, _ := net.Dial("tcp", a.Addrs()[0].String())
	defer client.Close()

	conn := <-opened
	go func() {
		_ = conn.AsyncWrite([]byte("pushed from another goroutine\n"))
	}()
	line := make([]byte, 30)
	_, _ = io.ReadFull(client, line)
	fmt.Print(string(line))
	// Output: pushed from another goroutine
}

type openNotifier struct {
	reactor.BaseHandler
	opened chan *reactor.Conn
}

func (h *openNotifier) OnOpen(c *reactor.Conn) { h.opened <- c }

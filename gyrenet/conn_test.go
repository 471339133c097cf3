package gyrenet_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gyre-io/gyre/gyrenet"
)

func TestListenerIsNetListener(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	if _, ok := l.Addr().(*net.TCPAddr); !ok {
		t.Fatalf("Addr = %T, want *net.TCPAddr", l.Addr())
	}
	client, server := pair(t, l)
	if got, want := server.RemoteAddr().String(), client.LocalAddr().String(); got != want {
		t.Errorf("server RemoteAddr = %s, want %s", got, want)
	}
	if got, want := server.LocalAddr().String(), client.RemoteAddr().String(); got != want {
		t.Errorf("server LocalAddr = %s, want %s", got, want)
	}
}

func TestListenNetworks(t *testing.T) {
	if _, err := gyrenet.Listen("unix", "/tmp/x", gyrenet.Config{}); err == nil {
		t.Fatal("Listen(unix) succeeded")
	}
	l, err := gyrenet.Listen("tcp4", "127.0.0.1:0", gyrenet.Config{Reactors: 1})
	if err != nil {
		t.Fatalf("Listen(tcp4): %v", err)
	}
	defer l.Shutdown(t.Context())
	if a := l.Addr().(*net.TCPAddr); a.IP.To4() == nil {
		t.Fatalf("tcp4 address %v", a)
	}
}

// TestEchoIOCopy: 10 MiB through a server running io.Copy(c, c) arrive
// intact, with the client writing and reading at once.
func TestEchoIOCopy(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	client, server := pair(t, l)
	served := make(chan error, 1)
	go func() {
		_, err := io.Copy(server, server)
		served <- err
	}()
	payload := make([]byte, 10<<20)
	_, _ = rand.Read(payload)
	werr := make(chan error, 1)
	go func() {
		_, err := client.Write(payload)
		werr <- err
	}()
	_ = client.SetReadDeadline(time.Now().Add(60 * time.Second))
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("client write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("echo differs from what was sent")
	}
	// The client closes: the server's Read sees EOF and io.Copy returns nil.
	client.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("io.Copy on the server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server io.Copy did not end at the client's close")
	}
}

// TestEOFAfterBufferedBytes: what the peer sent before its FIN is read
// first, then io.EOF, even when the reader comes late and reading was
// paused on a full read buffer.
func TestEOFAfterBufferedBytes(t *testing.T) {
	l := listen(t, gyrenet.Config{ReadBuffer: 4096})
	client, server := pair(t, l)
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)
	go func() {
		_, _ = client.Write(payload)
		client.(*net.TCPConn).CloseWrite()
	}()
	waitUntil(t, "the server's read buffer to fill and reading to pause", func() bool { return gyrenet.ReadPaused(server) })
	_ = server.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("read %d bytes, want the %d sent", len(got), len(payload))
	}
	if n, err := server.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}

// TestReadDeadline: a Read waiting past its deadline fails with
// os.ErrDeadlineExceeded; the connection stays open, and with the deadline
// extended the next Read gets the bytes.
func TestReadDeadline(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	client, server := pair(t, l)
	_ = server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	n, err := server.Read(make([]byte, 10))
	if n != 0 || !isTimeout(err) {
		t.Fatalf("Read = %d, %v; want a timeout", n, err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 5*time.Second {
		t.Fatalf("timed out after %v, want about 100ms", d)
	}
	// Still failing while the deadline is in the past.
	if _, err := server.Read(make([]byte, 10)); !isTimeout(err) {
		t.Fatalf("second Read = %v; want a timeout", err)
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	n, err = server.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read after extending = %q, %v", buf[:n], err)
	}
	// The zero time clears the deadline.
	_ = server.SetReadDeadline(time.Time{})
	go func() {
		// Write once the Read waits, with no deadline.
		for deadline := time.Now().Add(5 * time.Second); !gyrenet.ReadWaiting(server) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		_, _ = client.Write([]byte("again"))
	}()
	n, err = server.Read(buf)
	if err != nil || string(buf[:n]) != "again" {
		t.Fatalf("Read without deadline = %q, %v", buf[:n], err)
	}
}

// TestDeadlineMovedWhileWaiting: a deadline set while a Read waits applies
// to it, earlier or later.
func TestDeadlineMovedWhileWaiting(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	_, server := pair(t, l)
	done := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		done <- err
	}()
	waitUntil(t, "the Read to wait", func() bool { return gyrenet.ReadWaiting(server) })
	_ = server.SetReadDeadline(time.Now().Add(-time.Second)) // how net/http aborts its background read
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Fatalf("Read = %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline in the past did not wake the Read")
	}
	_ = server.SetReadDeadline(time.Now().Add(time.Hour))
	go func() {
		_, err := server.Read(make([]byte, 1))
		done <- err
	}()
	waitUntil(t, "the Read to wait", func() bool { return gyrenet.ReadWaiting(server) })
	_ = server.SetDeadline(time.Now().Add(50 * time.Millisecond))
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Fatalf("Read = %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an earlier deadline did not apply to a waiting Read")
	}
}

// TestWriteDeadline: a Write to a peer that does not read waits, then
// fails at its deadline with the count of bytes it took; those bytes, and
// no others, reach the peer; after the deadline is cleared Write works.
func TestWriteDeadline(t *testing.T) {
	l := listen(t, gyrenet.Config{WriteBuffer: 16 << 10, WriteHighWater: 32 << 10})
	client, server := pair(t, l)
	payload := make([]byte, 64<<20)
	_, _ = rand.Read(payload)
	_ = server.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := server.Write(payload)
	if !isTimeout(err) {
		t.Fatalf("Write = %d, %v; want a timeout", n, err)
	}
	if n == 0 || n >= len(payload) {
		t.Fatalf("Write took %d bytes before its deadline", n)
	}
	if _, err := server.Write([]byte("x")); !isTimeout(err) {
		t.Fatalf("Write after the deadline = %v; want a timeout", err)
	}
	_ = server.SetWriteDeadline(time.Time{})
	tail := []byte("the end")
	go func() { _, _ = server.Write(tail) }()
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, n+len(tail))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("client read: %v", err)
	}
	if !bytes.Equal(got[:n], payload[:n]) || !bytes.Equal(got[n:], tail) {
		t.Fatal("the client did not get exactly the bytes Write took")
	}
}

// TestCloseWakesRead: Close from another goroutine wakes a waiting Read
// with net.ErrClosed; later calls fail the same way.
func TestCloseWakesRead(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	client, server := pair(t, l)
	done := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 10))
		done <- err
	}()
	waitUntil(t, "the Read to wait", func() bool { return gyrenet.ReadWaiting(server) })
	if err := server.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the Read")
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
	if err := server.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	// The client sees the server's FIN.
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client Read after server Close = %v, want EOF", err)
	}
}

// TestCloseWakesWrite: Close wakes a Write waiting for room.
func TestCloseWakesWrite(t *testing.T) {
	l := listen(t, gyrenet.Config{WriteBuffer: 4096, WriteHighWater: 8192})
	_, server := pair(t, l)
	done := make(chan error, 1)
	go func() {
		_, err := server.Write(make([]byte, 64<<20))
		done <- err
	}()
	waitUntil(t, "the Write to wait", func() bool { return gyrenet.WriteWaiting(server) })
	select {
	case err := <-done:
		t.Fatalf("Write to a peer that does not read returned: %v", err)
	default:
	}
	server.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the Write")
	}
}

// TestCloseSendsWritten: bytes written just before Close reach the peer,
// followed by EOF.
func TestCloseSendsWritten(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	client, server := pair(t, l)
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)
	go func() {
		_, _ = server.Write(payload)
		server.Close()
	}()
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("client got %d bytes, %v; want %d and EOF", len(got), err, len(payload))
	}
}

// TestReadPausesWhenNotRead: a server that does not read stops taking
// bytes after about ReadBuffer plus the kernel's buffers, so the client's
// writes block; when the server reads, everything arrives in order.
func TestReadPausesWhenNotRead(t *testing.T) {
	l := listen(t, gyrenet.Config{ReadBuffer: 16 << 10})
	client, server := pair(t, l)
	payload := make([]byte, 64<<20)
	_, _ = rand.Read(payload[:1<<20])
	for off := 1 << 20; off < len(payload); off += 1 << 20 {
		copy(payload[off:], payload[:1<<20])
	}
	_ = client.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := client.Write(payload)
	if !isTimeout(err) {
		t.Fatalf("client Write of 64 MiB to a server that does not read = %d, %v; want it to block", n, err)
	}
	t.Logf("the client got %d bytes out before blocking", n)
	done := make(chan error, 1)
	go func() {
		_ = client.SetWriteDeadline(time.Time{})
		_, err := client.Write(payload[n : n+8<<20])
		done <- err
	}()
	want := payload[:n+8<<20]
	got := make([]byte, len(want))
	_ = server.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatalf("server read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	if err := <-done; err != nil {
		t.Fatalf("client write: %v", err)
	}
}

// TestPeerReset: a peer's RST ends a waiting Read with an error.
func TestPeerReset(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	client, server := pair(t, l)
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(server)
		done <- err
	}()
	_ = client.(*net.TCPConn).SetLinger(0)
	_, _ = client.Write([]byte("x"))
	client.Close()
	select {
	case <-done: // EOF or a reset, depending on timing: both end the Read
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not end at the peer's reset")
	}
	if _, err := server.Write([]byte("x")); err == nil {
		// The first write may be accepted before the reset is seen; a
		// later one fails.
		deadline := time.Now().Add(5 * time.Second)
		for err == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			_, err = server.Write([]byte("x"))
		}
		if err == nil {
			t.Fatal("Write kept succeeding after the peer reset")
		}
	}
}

// TestConcurrentReadWrite: one goroutine reads while another writes, on
// many connections at once (run with -race).
func TestConcurrentReadWrite(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	const conns = 20
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		client, server := pair(t, l)
		wg.Add(3)
		go func() { // server: echo with a reader and a writer goroutine
			defer wg.Done()
			ch := make(chan []byte, 4)
			go func() {
				defer wg.Done()
				for b := range ch {
					if _, err := server.Write(b); err != nil {
						t.Errorf("server write: %v", err)
						return
					}
				}
			}()
			for {
				b := make([]byte, 1500)
				n, err := server.Read(b)
				if n > 0 {
					ch <- b[:n]
				}
				if err != nil {
					close(ch)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte(i)}, 100<<10)
			go func() { _, _ = client.Write(msg) }()
			got := make([]byte, len(msg))
			_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("conn %d: echo wrong: %v", i, err)
			}
			client.Close()
		}()
	}
	wg.Wait()
}

// TestHalfCloseAnswer: a peer that sends its request and shuts down its
// sending side gets the answer written after the server's Read returned
// io.EOF, as with package net.
func TestHalfCloseAnswer(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	client, server := pair(t, l)
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	_ = server.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("question")); err != nil {
		t.Fatal(err)
	}
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	q, err := io.ReadAll(server) // ends at the FIN
	if err != nil || string(q) != "question" {
		t.Fatalf("server read %q, %v", q, err)
	}
	if _, err := server.Write([]byte("answer to " + string(q))); err != nil {
		t.Fatalf("Write after the peer's FIN: %v", err)
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := io.ReadAll(client)
	if err != nil || string(a) != "answer to question" {
		t.Fatalf("client read %q, %v", a, err)
	}
}

//go:build linux

package bufring_test

import (
	"net"
	"testing"
	"time"

	"github.com/gyre-io/gyre/internal/bufring"
	"github.com/gyre-io/gyre/internal/uring"
	"golang.org/x/sys/unix"
)

// pattern is the byte at stream offset i.
func pattern(i int) byte { return byte(i*31 + i>>8) }

// The kernel keeps receiving into the ring after the 16-bit tail wraps:
// every buffer Release republishes is picked up again, and every byte
// arrives in order.
func TestKernelRecvAcrossTailWrap(t *testing.T) {
	const count, size = 16, 64
	// 16 initial pushes + one push per completion: the tail passes 65535
	// after about 65520 completions of up to 64 bytes.
	const total = 70000 * size

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f, err := srv.(*net.TCPConn).File() // a blocking duplicate for the ring
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())

	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, total)
		for i := range buf {
			buf[i] = pattern(i)
		}
		_, err := cli.Write(buf)
		sent <- err
	}()

	var got, cqes, releases, arms int
	onRing(t, func(r *uring.Ring) {
		b, err := bufring.New(bufring.Config{Count: count, Size: size})
		if err != nil {
			t.Errorf("New: %v", err)
			return
		}
		defer b.Close()
		if err := b.Register(r, 1); err != nil {
			t.Errorf("Register: %v", err)
			return
		}
		dst := make([]uring.CQE, 64)
		armed := false
		deadline := time.Now().Add(15 * time.Second)
		for got < total {
			if time.Now().After(deadline) {
				t.Errorf("received %d of %d bytes in 15s", got, total)
				return
			}
			if !armed {
				r.PrepRecvMultishot(fd, b.Group(), 1)
				armed = true
				arms++
			}
			if err := r.SubmitAndWait(100 * time.Millisecond); err != nil {
				t.Errorf("SubmitAndWait: %v", err)
				return
			}
			n := r.Reap(dst)
			for _, c := range dst[:n] {
				cqes++
				if !c.More() {
					armed = false
				}
				id, ok := c.Buffer()
				if !ok {
					if c.Res == -int32(unix.ENOBUFS) {
						b.NoteExhausted()
						continue
					}
					t.Errorf("completion %d: res %d without a buffer after %d bytes", cqes, c.Res, got)
					return
				}
				p := b.Take(id, int(c.Res))
				for i, x := range p {
					if x != pattern(got+i) {
						t.Errorf("byte %d is %#x, want %#x (buffer %d)", got+i, x, pattern(got+i), id)
						b.Release(id)
						return
					}
				}
				got += len(p)
				b.Release(id)
				releases++
			}
		}
		// Stop the recv before the ring unregisters the buffers.
		if armed {
			r.PrepCancel(1, 2)
			for end := time.Now().Add(5 * time.Second); armed && time.Now().Before(end); {
				if err := r.SubmitAndWait(50 * time.Millisecond); err != nil {
					t.Errorf("SubmitAndWait: %v", err)
					return
				}
				for _, c := range dst[:r.Reap(dst)] {
					if c.UserData == 1 && !c.More() {
						armed = false
					}
				}
			}
		}
	})
	select {
	case err := <-sent:
		if err != nil {
			t.Errorf("client write: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("client write did not finish")
	}
	if got != total {
		t.Fatalf("received %d bytes, want %d", got, total)
	}
	if count+releases <= 1<<16 {
		t.Errorf("only %d releases: the tail did not wrap", releases)
	}
	t.Logf("%d bytes in %d completions, %d releases, %d arms", got, cqes, releases, arms)
}

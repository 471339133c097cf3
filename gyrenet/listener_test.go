package gyrenet_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gyre-io/gyre/gyrenet"
)

// TestCloseWakesAccept: Close wakes a waiting Accept with net.ErrClosed,
// and Accept fails the same way afterwards.
func TestCloseWakesAccept(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	waitUntil(t, "the Accept to wait", func() bool { return gyrenet.AcceptWaiting(l) })
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Accept")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v", err)
	}
	if err := l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	// Nothing was open: the reactors stopped with Close.
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed after Close with no connection open")
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Fatal("dial succeeded after Close")
	}
}

// TestCloseKeepsAcceptedConns: connections Accept returned outlive the
// listener's Close, as in package net; connections not yet accepted are
// closed; the reactors stop when the last connection closes.
func TestCloseKeepsAcceptedConns(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	client, server := pair(t, l)
	pending := dial(t, l) // accepted by the reactors, never by Accept
	waitUntil(t, "the connection to wait for Accept", func() bool { return gyrenet.Pending(l) == 1 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_ = pending.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := pending.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection never accepted stayed open after Close")
	}
	go func() { _, _ = io.Copy(server, server) }()
	if _, err := client.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("echo after the listener closed: %q %v", buf, err)
	}
	select {
	case <-l.Done():
		t.Fatal("reactors stopped with a connection open")
	case <-time.After(100 * time.Millisecond):
	}
	server.Close()
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("reactors did not stop after the last connection closed")
	}
}

// TestShutdownClosesConns: Shutdown ends open connections, sending what
// was written first, and wakes a waiting Read.
func TestShutdownClosesConns(t *testing.T) {
	l := listen(t, gyrenet.Config{})
	client, server := pair(t, l)
	if _, err := server.Write([]byte("goodbye")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		done <- err
	}()
	waitUntil(t, "the Read to wait", func() bool { return gyrenet.ReadWaiting(server) })
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not wake the Read")
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "goodbye" {
		t.Fatalf("client got %q, %v; want goodbye then EOF", got, err)
	}
}

// TestBacklogFull: connections beyond Backlog waiting for Accept are
// reset, and counted.
func TestBacklogFull(t *testing.T) {
	l := listen(t, gyrenet.Config{Backlog: 2})
	for i := 0; i < 4; i++ {
		dial(t, l)
	}
	waitUntil(t, "two refusals", func() bool { return l.Refused() >= 2 })
	if got := l.Refused(); got != 2 {
		t.Fatalf("Refused = %d, want 2", got)
	}
	for i := 0; i < 2; i++ {
		accept(t, l)
	}
}

package gyrenet

import "net"

// Test hooks: what a test waits for before it acts, instead of sleeping.

// ReadWaiting reports whether a Read on c is waiting.
func ReadWaiting(c net.Conn) bool {
	cc := c.(*Conn)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.readWaiting
}

// WriteWaiting reports whether a Write on c is waiting.
func WriteWaiting(c net.Conn) bool {
	cc := c.(*Conn)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.writeWaiting
}

// ReadPaused reports whether the reactor stopped reading c because its
// read buffer is full.
func ReadPaused(c net.Conn) bool {
	cc := c.(*Conn)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.readPaused
}

// AcceptWaiting reports whether an Accept on l is waiting.
func AcceptWaiting(l *Listener) bool { return l.accepting.Load() > 0 }

// Pending returns the connections accepted by the reactors and waiting
// for Accept.
func Pending(l *Listener) int { return len(l.acceptq) }

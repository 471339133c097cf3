// Command idle-rss measures what an idle connection costs a server after
// one round trip: it reads the server's RSS (/proc/PID/status), opens
// -conns connections, sends each one ingest-v1 PING (16 bytes: an echo
// server echoes it, ingestd answers PONG) and reads 16 bytes back, waits
// -settle, and prints the RSS growth per connection, before and after the
// round trips. A warm-up of 200 connections through the same path runs
// first, so one-time costs are in the start value.
//
//	idle-rss -addr 127.0.0.1:7400 -pid $(pgrep -f 'gyre-echo') -conns 10000
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"github.com/gyre-io/gyre/bench/internal/procfs"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7400", "server address")
	pid := flag.Int("pid", 0, "the server's process id")
	conns := flag.Int("conns", 10000, "connections to hold")
	settle := flag.Duration("settle", 2*time.Second, "wait after the round trips before reading RSS")
	flag.Parse()
	if err := run(*addr, *pid, *conns, *settle); err != nil {
		fmt.Fprintf(os.Stderr, "idle-rss: %v\n", err)
		os.Exit(1)
	}
}

func run(addr string, pid, n int, settle time.Duration) error {
	if pid <= 0 || n <= 0 {
		return errors.New("-pid and -conns must be positive")
	}
	ping := make([]byte, 16)
	binary.BigEndian.PutUint32(ping, 12)
	ping[4], ping[5] = 1, 4 // version 1, PING
	binary.BigEndian.PutUint64(ping[8:], 1)
	roundTrip := func(c net.Conn) error {
		if _, err := c.Write(ping); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 16))
		return err
	}
	var warm []net.Conn
	for range 200 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		if err := roundTrip(c); err != nil {
			return err
		}
		warm = append(warm, c)
	}
	for _, c := range warm {
		c.Close()
	}
	time.Sleep(settle)
	before, err := procfs.RSS(pid)
	if err != nil {
		return err
	}
	cs := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("after %d connections: %w", len(cs), err)
		}
		cs = append(cs, c)
	}
	time.Sleep(settle)
	connected, err := procfs.RSS(pid)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := roundTrip(c); err != nil {
			return err
		}
	}
	time.Sleep(settle)
	after, err := procfs.RSS(pid)
	if err != nil {
		return err
	}
	fmt.Printf("%d connections: RSS %d KiB at start; %d B per connection once connected, %d B after one round trip\n",
		n, before>>10, (connected-before)/int64(n), (after-before)/int64(n))
	return nil
}

package main

import (
	"errors"
	"io"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// TestSIGTERMDrain: with clients connected and sending, SIGTERM makes each
// client receive, after its last ACK, a GOAWAY carrying that ACK's seq and
// then the end of the connection; the process logs "draining" and exits 0
// within --grace; the log holds exactly the messages each GOAWAY says were
// accepted. (The end should be a clean EOF; a reset is tolerated here and
// pinned as a bug by TestBugDrainResetDestroysGoaway.)
func TestSIGTERMDrain(t *testing.T) {
	const (
		clients = 8
		window  = 64
		grace   = 5 * time.Second
	)
	dir := t.TempDir()
	d := startServe(t, dir, "--grace", grace.String())
	if code, body := httpGet(t, d.metrics, "/healthz"); code != 200 {
		t.Fatalf("/healthz before SIGTERM: %d %q", code, body)
	}
	var load []*loadClient
	for i := 0; i < clients; i++ {
		load = append(load, startLoad(t, d.tcp, i, window))
	}
	waitAcked(t, load, 100, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	if code, body := httpGet(t, d.metrics, "/healthz"); code != 200 {
		t.Errorf("/healthz under load: %d %q", code, body)
	}

	start := time.Now()
	d.signal(syscall.SIGTERM)
	code := d.wait(grace + 5*time.Second)
	took := time.Since(start)
	if code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0; stderr:\n%s", code, d.stderr.String())
	}
	if took > grace {
		t.Errorf("drain took %v, longer than --grace %v", took, grace)
	}
	if strings.Contains(d.stderr.String(), "grace period over") {
		t.Errorf("drain ran into the grace period:\n%s", d.stderr.String())
	}
	if !strings.Contains(d.stderr.String(), "msg=draining") {
		t.Errorf("no \"draining\" in the log:\n%s", d.stderr.String())
	}
	waitDone(t, load, 10*time.Second)
	t.Logf("drain took %v", took)

	stored := logContents(t, dir)
	perClient := map[int][]uint64{}
	for k, n := range stored {
		if n != 1 {
			t.Errorf("client %d seq %d stored %d times", k.client, k.seq, n)
		}
		perClient[k.client] = append(perClient[k.client], k.seq)
	}
	resets := 0
	for _, lc := range load {
		for _, p := range lc.problems {
			t.Error(p)
		}
		if !lc.gotGoaway {
			t.Errorf("client %d: no GOAWAY (last ACK %d, sent %d, reading ended with %v)", lc.id, lc.lastAck, lc.sentSeq.Load(), lc.readErr)
			continue
		}
		// The GOAWAY comes after the last ACK and names it.
		var lastAckBefore uint64
		for _, ev := range lc.frames {
			if ev.kind == ingest.KindGoaway {
				break
			}
			if ev.kind == ingest.KindAck {
				lastAckBefore = ev.seq
			}
		}
		if lc.goawaySeq != lastAckBefore || lc.goawaySeq != lc.lastAck {
			t.Errorf("client %d: GOAWAY %d, last ACK before it %d, last ACK overall %d: want all equal",
				lc.id, lc.goawaySeq, lastAckBefore, lc.lastAck)
		}
		for seq, code := range lc.nacked {
			if code != ingest.NackShuttingDown || seq <= lc.goawaySeq {
				t.Errorf("client %d: NACK seq %d code %d during the drain (GOAWAY %d)", lc.id, seq, code, lc.goawaySeq)
			}
		}
		// Then the server closes the connection.
		switch {
		case errors.Is(lc.readErr, io.EOF):
		case errors.Is(lc.readErr, syscall.ECONNRESET):
			resets++
		default:
			t.Errorf("client %d: after GOAWAY reading ended with %v, want EOF", lc.id, lc.readErr)
		}
		// Exactly the messages up to the GOAWAY seq are stored: they were
		// acknowledged, and nothing beyond it was accepted (a client
		// resends those elsewhere, so storing them would duplicate them).
		seqs := perClient[lc.id]
		sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
		if uint64(len(seqs)) != lc.goawaySeq || len(seqs) > 0 && seqs[len(seqs)-1] != lc.goawaySeq {
			t.Errorf("client %d: %d messages stored (highest %v), want exactly seqs 1..%d", lc.id, len(seqs), seqs[max(len(seqs)-1, 0):], lc.goawaySeq)
		}
		t.Logf("client %d: sent %d, GOAWAY %d, %d NACK 4, stored %d, end %v", lc.id, lc.sentSeq.Load(), lc.goawaySeq, len(lc.nacked), len(seqs), lc.readErr)
	}
	if resets > 0 {
		// Known bug, pinned by TestBugDrainResetDestroysGoaway: the drain
		// closes with the client's in-flight bytes unread, so Linux sends
		// RST instead of FIN. These clients still had the GOAWAY (they read
		// promptly), which is what this test requires.
		t.Logf("%d of %d clients got a connection reset instead of EOF after GOAWAY (see TestBugDrainResetDestroysGoaway)", resets, clients)
	}
}

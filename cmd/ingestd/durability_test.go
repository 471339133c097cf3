package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGKILLKeepsEveryAckedMessage is the durability promise: an ACK means
// the message is fsynced, so killing the process mid-load loses nothing
// that was acknowledged. Three rounds of load + SIGKILL on one data dir,
// each restart recovering what the previous kill left; then a last restart
// takes new messages and drains cleanly, and the log holds every
// acknowledged message exactly once, intact. (make test-hostile runs five
// rounds: TestHostileSIGKILL.)
func TestSIGKILLKeepsEveryAckedMessage(t *testing.T) {
	sigkillRounds(t, 3)
}

// sigkillRounds runs rounds of pipelined load + SIGKILL on one data dir
// and checks the log as TestSIGKILLKeepsEveryAckedMessage describes,
// logging each round's counts.
func sigkillRounds(t *testing.T, rounds int) {
	t.Helper()
	const (
		clients = 8
		window  = 64
	)
	dir := t.TempDir()
	acked := map[key]bool{}
	var all []*loadClient // clients of every round; ids round*100+i
	var ackedTotal uint64
	recovered := make([]string, rounds+1) // what each restart logged recovering
	for round := 0; round < rounds; round++ {
		// Small segments, so the kill finds the log in the middle of
		// rotations and the reader must cross many segments.
		d := startServe(t, dir, "--segment-bytes", "262144")
		if round > 0 && strings.Contains(d.stderr.String(), "level=ERROR") {
			t.Errorf("round %d: restart after SIGKILL logged an error:\n%s", round, d.stderr.String())
		}
		recovered[round] = reRecovered.FindString(d.stderr.String())
		var load []*loadClient
		for i := 0; i < clients; i++ {
			load = append(load, startLoad(t, d.tcp, round*100+i, window))
		}
		// Kill once every client has 6,000, 4,000 or 2,000 records
		// acknowledged: a different point of the load each round, and
		// segments rotated several times by then.
		waitAcked(t, load, uint64(6000-2000*(round%3)), 30*time.Second)

		d.signal(syscall.SIGKILL)
		if code := d.wait(10 * time.Second); code != -1 {
			t.Fatalf("ingestd exit status %d after SIGKILL, want death by signal", code)
		}
		waitDone(t, load, 10*time.Second)
		for _, lc := range load {
			for _, p := range lc.problems {
				t.Error(p)
			}
			for seq := uint64(1); seq <= lc.lastAck; seq++ {
				if code, ok := lc.nacked[seq]; ok {
					t.Errorf("client %d: seq %d NACKed (code %d) under the block policy", lc.id, seq, code)
					continue
				}
				acked[key{lc.id, seq}] = true
			}
			ackedTotal += lc.lastAck
			if lc.lastAck == 0 {
				t.Errorf("client %d got no ACK during its load", lc.id)
			}
		}
		all = append(all, load...)
	}

	// Restart on the same directory: it must recover and serve.
	d2 := startServe(t, dir)
	sendAndAck(t, d2.tcp, 1000, 10) // and accept new messages after the recovered ones
	d2.stop(15 * time.Second)
	if strings.Contains(d2.stderr.String(), "level=ERROR") {
		t.Errorf("restart logged an error:\n%s", d2.stderr.String())
	}
	recovered[rounds] = reRecovered.FindString(d2.stderr.String())
	if m := recovered[rounds]; m != "" {
		t.Logf("restart: %s", m)
	}

	stored := logContents(t, dir)
	missing, dups := 0, 0
	for k := range acked {
		if stored[k] == 0 {
			if missing++; missing <= 10 {
				t.Errorf("acked message client %d seq %d is not in the log", k.client, k.seq)
			}
		}
	}
	perClient := map[int][]uint64{}
	for k, n := range stored {
		if n > 1 {
			if dups++; dups <= 10 {
				t.Errorf("client %d seq %d stored %d times", k.client, k.seq, n)
			}
		}
		perClient[k.client] = append(perClient[k.client], k.seq)
	}
	if missing > 0 || dups > 0 {
		t.Errorf("%d acked messages missing, %d stored more than once", missing, dups)
	}
	// Each connection's messages go through one shard, in order, into an
	// append-only log: what survives is a prefix 1..k of what was sent,
	// with k at least the last ACK.
	var storedTotal int
	var report []string
	for _, lc := range all {
		seqs := perClient[lc.id]
		sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
		for j, s := range seqs {
			if s != uint64(j+1) {
				t.Errorf("client %d: stored seqs are not 1..%d: position %d holds seq %d", lc.id, len(seqs), j, s)
				break
			}
		}
		if uint64(len(seqs)) > lc.sentSeq.Load() {
			t.Errorf("client %d: %d stored, only %d sent", lc.id, len(seqs), lc.sentSeq.Load())
		}
		storedTotal += len(seqs)
		report = append(report, fmt.Sprintf("c%d %d/%d/%d", lc.id, lc.lastAck, len(seqs), lc.sentSeq.Load()))
	}
	if n := len(perClient[1000]); n != 10 {
		t.Errorf("the 10 messages sent after the last restart: %d stored", n)
	}
	if extra := len(stored) - storedTotal - len(perClient[1000]); extra != 0 {
		t.Errorf("%d stored messages belong to no client", extra)
	}
	for round := 0; round < rounds; round++ {
		var sent, ackedN, storedN, lost, twice int
		for _, lc := range all[round*clients : (round+1)*clients] {
			sent += int(lc.sentSeq.Load())
			storedN += len(perClient[lc.id])
			for _, seq := range perClient[lc.id] {
				if stored[key{lc.id, seq}] > 1 {
					twice++
				}
			}
			for seq := uint64(1); seq <= lc.lastAck; seq++ {
				if acked[key{lc.id, seq}] {
					ackedN++
					if stored[key{lc.id, seq}] == 0 {
						lost++
					}
				}
			}
		}
		how := "nothing to recover"
		if m := recovered[round+1]; m != "" {
			how = strings.TrimSpace(m)
		}
		t.Logf("SIGKILL round %d/%d: sent %d, acked %d, stored %d after recovery (%d unacked ones in flight at the kill), acked missing %d, stored twice %d; restart: %s",
			round+1, rounds, sent, ackedN, storedN, storedN-ackedN, lost, twice, how)
	}
	t.Logf("%d SIGKILLs: acked %d, stored %d (acked/stored/sent per client: %s)",
		rounds, ackedTotal, storedTotal, strings.Join(report, ", "))

	// The shipped reader agrees with ReadLog.
	code, out, errOut := runCmd(t, "read", "--data-dir", dir, "--count")
	want := fmt.Sprintf("%d records,", storedTotal+10)
	if code != 0 || !strings.HasPrefix(out, want) {
		t.Errorf("ingestd read --count: status %d, output %q (stderr %q), want it to start with %q", code, out, errOut, want)
	}
}

// reRecovered finds what a restart logged about recovering the log.
var reRecovered = regexp.MustCompile(`.*recovered.*`)

// lastSegment returns the path of the newest segment in dir.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segments in %s (%v)", dir, err)
	}
	sort.Strings(segs)
	return segs[len(segs)-1]
}

// recordOffsets returns the offset of every record in a segment file,
// walking the headers (magic "GREC", length at byte 8; 52 bytes in a
// version 2 segment, 36 in a version 1 one).
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hs := 52
	if len(b) >= 12 && b[11] == 1 {
		hs = 36
	}
	var offs []int64
	for off := 16; off+hs <= len(b); {
		if string(b[off:off+4]) != "GREC" {
			t.Fatalf("%s: no record at offset %d", path, off)
		}
		n := int(b[off+8])<<24 | int(b[off+9])<<16 | int(b[off+10])<<8 | int(b[off+11])
		offs = append(offs, int64(off))
		off += hs + n
	}
	return offs
}

// TestTornTailRecovery damages the end of a cleanly written log by hand,
// as a crash or a bad disk would, and restarts ingestd on it: it must
// start, log what it recovered, keep every complete record, and append
// after them.
func TestTornTailRecovery(t *testing.T) {
	const n = 50
	cases := []struct {
		name string
		// damage changes the last segment; it returns how many of the n
		// records must survive.
		damage  func(t *testing.T, seg string) int
		logWant string
		// readBefore is what `ingestd read` says about the damaged log
		// before any restart: its exit status.
		readBefore int
	}{
		{
			name: "garbage appended",
			damage: func(t *testing.T, seg string) int {
				appendFile(t, seg, []byte("GREC\x00\x01garbage that is not a record"))
				return n
			},
			logWant:    "recovered torn tail",
			readBefore: 0,
		},
		{
			name: "last record cut in half",
			damage: func(t *testing.T, seg string) int {
				offs := recordOffsets(t, seg)
				st, _ := os.Stat(seg)
				last := offs[len(offs)-1]
				if err := os.Truncate(seg, last+(st.Size()-last)/2); err != nil {
					t.Fatal(err)
				}
				return n - 1
			},
			logWant:    "recovered torn tail",
			readBefore: 0,
		},
		{
			name: "last record header cut short",
			damage: func(t *testing.T, seg string) int {
				offs := recordOffsets(t, seg)
				if err := os.Truncate(seg, offs[len(offs)-1]+10); err != nil {
					t.Fatal(err)
				}
				return n - 1
			},
			logWant:    "recovered torn tail",
			readBefore: 0,
		},
		{
			// Not a crash pattern: damage with intact records after it.
			// Recovery keeps the records before it, saves the rest aside
			// and says so at error level; the reader calls it corruption.
			name: "record in the middle damaged",
			damage: func(t *testing.T, seg string) int {
				offs := recordOffsets(t, seg)
				flipByte(t, seg, offs[n-10]+56) // a payload byte of record n-10 (52-byte header)
				return n - 10
			},
			logWant:    "damaged before intact records",
			readBefore: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d := startServe(t, dir)
			sendAndAck(t, d.tcp, 1, n)
			d.stop(15 * time.Second)

			seg := lastSegment(t, dir)
			keep := tc.damage(t, seg)

			code, out, errOut := runCmd(t, "read", "--data-dir", dir, "--count")
			if code != tc.readBefore {
				t.Errorf("ingestd read on the damaged log: status %d, want %d (stdout %q, stderr %q)", code, tc.readBefore, out, errOut)
			}
			if code == 0 && !strings.HasPrefix(out, fmt.Sprintf("%d records,", keep)) {
				t.Errorf("ingestd read on the damaged log: %q, want %d records", out, keep)
			}

			d2 := startServe(t, dir)
			d2.waitLog(tc.logWant, 5*time.Second)
			t.Logf("recovery: %s", regexp.MustCompile(`.*`+tc.logWant+`.*`).FindString(d2.stderr.String()))
			sendAndAck(t, d2.tcp, 2, 5)
			d2.stop(15 * time.Second)

			stored := logContents(t, dir)
			for seq := uint64(1); seq <= n; seq++ {
				want := 0
				if seq <= uint64(keep) {
					want = 1
				}
				if got := stored[key{1, seq}]; got != want {
					t.Errorf("record seq %d stored %d times after recovery, want %d", seq, got, want)
				}
			}
			for seq := uint64(1); seq <= 5; seq++ {
				if stored[key{2, seq}] != 1 {
					t.Errorf("record appended after recovery, seq %d: stored %d times", seq, stored[key{2, seq}])
				}
			}
			if len(stored) != keep+5 {
				t.Errorf("%d distinct records in the log, want %d", len(stored), keep+5)
			}
			dropped, _ := filepath.Glob(seg + ".dropped-*")
			if tc.readBefore != 0 && len(dropped) != 1 {
				t.Errorf("want the damaged bytes saved in one .dropped- file, got %v", dropped)
			}
			if tc.readBefore == 0 && len(dropped) != 0 {
				t.Errorf("a torn tail was saved aside: %v", dropped)
			}
		})
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

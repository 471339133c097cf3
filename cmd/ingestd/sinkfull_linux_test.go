package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/internal/testenv"
)

// TestDiskFullThenFreed runs ingestd on a small tmpfs and fills it: the
// records that cannot be stored get NACK 6 (storage unavailable), /healthz
// answers 503 naming the cause and gyre_ingest_sink_healthy is 0; once
// space is freed /healthz is 200 again within 1 s without any traffic,
// records are stored again, SIGTERM exits 0, and the log holds every ACKed
// record exactly once and none of the NACKed ones.
func TestDiskFullThenFreed(t *testing.T) {
	dir := testenv.MountTmpfs(t, 1<<20)
	d := startServe(t, dir, "--segment-bytes", "65536")
	if code, body := httpGet(t, d.metrics, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz at start: %d %q", code, body)
	}
	sendAndAck(t, d.tcp, 1, 50)

	filler := testenv.FillDisk(t, dir)
	acked, nacked := sendResolve(t, d.tcp, 2, 3000)
	if len(nacked) == 0 {
		t.Fatal("no NACK while the disk was full")
	}
	code, body := httpGet(t, d.metrics, "/healthz")
	if code != 503 || !strings.Contains(body, "storage unavailable") || !strings.Contains(body, "no space left on device") {
		t.Fatalf("/healthz with a full disk: %d %q, want 503 naming the cause", code, body)
	}
	_, metrics := httpGet(t, d.metrics, "/metrics")
	if v, ok := metricValue(metrics, "gyre_ingest_sink_healthy"); !ok || v != 0 {
		t.Errorf("gyre_ingest_sink_healthy with a full disk = %v (present %v), want 0", v, ok)
	}
	if !strings.Contains(metrics, `gyre_ingest_nacks_total{code="storage unavailable"} `+fmt.Sprint(len(nacked))) {
		t.Errorf("metrics do not count %d NACKs of code 6:\n%s", len(nacked), grepLines(metrics, "nacks_total"))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		code, body := httpGet(t, d.metrics, "/healthz")
		if code == 200 && body == "ok\n" {
			break
		}
		if time.Since(freed) > time.Second {
			t.Fatalf("/healthz still %d %q 1 s after space was freed", code, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("/healthz ok %v after space was freed; %d records ACKed and %d NACKed while full", time.Since(freed), len(acked), len(nacked))
	_, metrics = httpGet(t, d.metrics, "/metrics")
	if v, ok := metricValue(metrics, "gyre_ingest_sink_healthy"); !ok || v != 1 {
		t.Errorf("gyre_ingest_sink_healthy after recovery = %v (present %v), want 1", v, ok)
	}
	sendAndAck(t, d.tcp, 3, 50)
	d.stop(10 * time.Second)

	stored := logContents(t, dir)
	for seq := uint64(1); seq <= 50; seq++ {
		for _, client := range []int{1, 3} {
			if n := stored[key{client, seq}]; n != 1 {
				t.Errorf("client %d seq %d (ACKed) stored %d times", client, seq, n)
			}
		}
	}
	for _, seq := range acked {
		if n := stored[key{2, seq}]; n != 1 {
			t.Errorf("client 2 seq %d (ACKed) stored %d times", seq, n)
		}
	}
	for _, seq := range nacked {
		if n := stored[key{2, seq}]; n != 0 {
			t.Errorf("client 2 seq %d (NACKed) stored %d times", seq, n)
		}
	}
}

// sendResolve sends seqs 1..n of client on one connection and reads
// replies until each is ACKed or NACKed; every NACK must be code 6.
func sendResolve(t *testing.T, addr string, client, n int) (acked, nacked []uint64) {
	t.Helper()
	c := sendRecords(t, addr, client, n)
	defer c.Close()
	refused := map[uint64]bool{}
	var ack uint64
	resolved := func() bool {
		for s := ack + 1; s <= uint64(n); s++ {
			if !refused[s] {
				return false
			}
		}
		return true
	}
	dec := ingest.NewReplyDecoder()
	var buf []byte
	tmp := make([]byte, 4096)
	for !resolved() {
		f, used, err := dec.Decode(buf)
		if err == nil {
			switch {
			case f.Kind == ingest.KindAck:
				ack = f.Seq
			case f.Kind == ingest.KindNack && f.NackCode() == ingest.NackStorageUnavailable:
				refused[f.Seq] = true
			default:
				t.Fatalf("got %v seq %d code %v, want ACKs and NACK 6", f.Kind, f.Seq, f.NackCode())
			}
			buf = buf[used:]
			continue
		}
		if !errors.Is(err, ingest.ErrNeedMore) {
			t.Fatalf("reading replies: %v", err)
		}
		m, rerr := c.Read(tmp)
		buf = append(buf, tmp[:m]...)
		if rerr != nil && m == 0 {
			t.Fatalf("reading replies (ACK %d, %d NACKed): %v", ack, len(refused), rerr)
		}
	}
	for s := uint64(1); s <= uint64(n); s++ {
		if refused[s] {
			nacked = append(nacked, s)
		} else {
			acked = append(acked, s)
		}
	}
	return acked, nacked
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

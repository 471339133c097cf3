package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/gyre-io/gyre/ingest"
)

// TestReadPrintsSessions: `ingestd read` prints each record's session (32
// hex digits, "-" without one) and its seq; --count and --limit are not
// changed by it. It runs the command in this process on a log written by
// the file sink.
func TestReadPrintsSessions(t *testing.T) {
	dir := t.TempDir()
	sink, err := ingest.OpenFileSink(ingest.FileSinkConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	id, err := ingest.ParseSessionID("00112233445566778899aabbccddeeff")
	if err != nil {
		t.Fatal(err)
	}
	batch := []ingest.Record{
		{Conn: 3, Seq: 41, Session: id, Payload: []byte("with a session")},
		{Conn: 4, Seq: 7, Payload: []byte("without")},
		{Conn: 3, Seq: 42, Session: id, Payload: []byte("x")},
	}
	if err := sink.Write(batch); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	read := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"read", "--data-dir", dir}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, out, errOut := read()
	if code != exitOK {
		t.Fatalf("read: exit status %d; stderr:\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(batch)+1 {
		t.Fatalf("read printed %d lines, want %d records and a count:\n%s", len(lines), len(batch), out)
	}
	wantSession := []string{"00112233445566778899aabbccddeeff", "-", "00112233445566778899aabbccddeeff"}
	for i, line := range lines[:len(batch)] {
		m := reReadLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d %q does not look like a record", i, line)
			continue
		}
		r := batch[i]
		if m[2] != fmt.Sprint(r.Conn) || m[3] != wantSession[i] || m[4] != fmt.Sprint(r.Seq) || m[6] != fmt.Sprintf("%q", r.Payload) {
			t.Errorf("line %d %q: want conn=%d session=%s seq=%d payload %q", i, line, r.Conn, wantSession[i], r.Seq, r.Payload)
		}
	}
	if want := "3 records, 22 payload bytes"; lines[len(batch)] != want {
		t.Errorf("last line %q, want %q", lines[len(batch)], want)
	}

	if code, out, _ := read("--count"); code != exitOK || out != "3 records, 22 payload bytes\n" {
		t.Errorf("read --count: status %d, output %q", code, out)
	}
	if code, out, _ := read("--limit", "1"); code != exitOK || !strings.Contains(out, " session=00112233445566778899aabbccddeeff seq=41 ") ||
		!strings.HasSuffix(out, "\n1 records, 14 payload bytes\n") {
		t.Errorf("read --limit 1: status %d, output %q", code, out)
	}
}

package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeConfig writes a JSON config file and returns its path.
func writeConfig(t *testing.T, json string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ingestd.json")
	if err := os.WriteFile(p, []byte(json), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadConfigExits2 runs ingestd with one bad setting at a time: it must
// exit with status 2 at once, say what is wrong on stderr, and not touch
// the data directory or start serving.
func TestBadConfigExits2(t *testing.T) {
	cases := []struct {
		name string
		args []string // after the safe defaults below, so they win
		json string   // config file contents, if any
		want string   // on stderr
	}{
		{name: "overload", args: []string{"--overload", "nope"}, want: `--overload "nope": want block, reject or shed`},
		{name: "sink", args: []string{"--sink", "nope"}, want: `--sink "nope": want file, jetstream or discard`},
		{name: "jetstream without url", args: []string{"--sink", "jetstream", "--stream", "S", "--subject", "a.b"},
			want: `--nats-url is required with --sink jetstream`},
		{name: "jetstream without stream", args: []string{"--sink", "jetstream", "--nats-url", "nats://127.0.0.1:4222", "--subject", "a.b"},
			want: `--stream is required with --sink jetstream`},
		{name: "jetstream without subject", args: []string{"--sink", "jetstream", "--nats-url", "nats://127.0.0.1:4222", "--stream", "S"},
			want: `--subject is required with --sink jetstream`},
		{name: "jetstream bad url", args: []string{"--sink", "jetstream", "--nats-url", "nats://127.0.0.1:4222,http://x:1", "--stream", "S", "--subject", "a.b"},
			want: `--nats-url: URL 2: scheme "http", want nats, tls, ws or wss`},
		{name: "jetstream bad stream", args: []string{"--sink", "jetstream", "--nats-url", "127.0.0.1:4222", "--stream", "a.b", "--subject", "a.b"},
			want: `--stream "a.b": no whitespace, '.'`},
		{name: "jetstream wildcard subject", args: []string{"--sink", "jetstream", "--nats-url", "127.0.0.1:4222", "--stream", "S", "--subject", "ingest.>"},
			want: `--subject "ingest.>": no wildcards`},
		{name: "jetstream two credentials", args: []string{"--sink", "jetstream", "--nats-url", "127.0.0.1:4222", "--stream", "S", "--subject", "a.b",
			"--nats-user", "u", "--nats-token", "t"}, want: `--nats-creds, --nats-nkey, --nats-user and --nats-token: give at most one`},
		{name: "jetstream password without user", args: []string{"--sink", "jetstream", "--nats-url", "127.0.0.1:4222", "--stream", "S", "--subject", "a.b",
			"--nats-password", "p"}, want: `--nats-password needs --nats-user`},
		{name: "jetstream cert without key", args: []string{"--sink", "jetstream", "--nats-url", "127.0.0.1:4222", "--stream", "S", "--subject", "a.b",
			"--nats-tls-cert", "c.pem"}, want: `--nats-tls-cert and --nats-tls-key must be given together`},
		{name: "jetstream creds file missing", args: []string{"--sink", "jetstream", "--nats-url", "127.0.0.1:4222", "--stream", "S", "--subject", "a.b",
			"--nats-creds", "/nonexistent/user.creds"}, want: `--nats-creds: open /nonexistent/user.creds: no such file or directory`},
		{name: "jetstream config file", json: `{"sink": "jetstream", "nats_url": "nats://127.0.0.1:4222", "stream": "S"}`,
			want: `--subject is required with --sink jetstream`},
		{name: "reactors 0", args: []string{"--reactors", "0"}, want: `--reactors 0: want 1..1024`},
		{name: "queue smaller than payload", args: []string{"--max-payload", "2000", "--queue-bytes", "1000"},
			want: `--queue-bytes 1000 is smaller than --max-payload 2000`},
		{name: "tcp address", args: []string{"--tcp", "notanaddress"}, want: `--tcp "notanaddress"`},
		{name: "metrics address", args: []string{"--metrics", "nowhere"}, want: `--metrics "nowhere"`},
		{name: "log level", args: []string{"--log-level", "loud"}, want: `--log-level "loud"`},
		// A removed setting is refused with the reason, not ignored.
		{name: "ack delay removed", args: []string{"--ack-delay", "1ms"}, want: `--ack-delay was removed: it never had an effect`},
		{name: "ack delay removed, one dash", args: []string{"-ack-delay=2ms"}, want: `--ack-delay was removed`},
		{name: "config ack delay removed", json: `{"ack_delay": "1ms"}`, want: `ack_delay was removed: it never had an effect`},
		{name: "udp buffer", args: []string{"--quic-udp-buffer", "-1"}, want: `--quic-udp-buffer -1: want 0`},
		{name: "reactors not a number", args: []string{"--reactors", "two"}, want: `invalid value "two" for flag -reactors`},
		{name: "unknown flag", args: []string{"--bogus"}, want: `flag provided but not defined: -bogus`},
		{name: "stray argument", args: []string{"serve"}, want: `unexpected arguments ["serve"]`},
		{name: "config unknown key", json: `{"tcp": "127.0.0.1:0", "bogus_key": 1}`, want: `unknown field "bogus_key"`},
		{name: "config bad value", json: `{"overload": "nope"}`, want: `--overload "nope"`},
		{name: "config bad duration", json: `{"grace": "soon"}`, want: `grace: time: invalid duration "soon"`},
		{name: "config not JSON", json: `tcp = "127.0.0.1:0"`, want: `config file`},
		{name: "config missing", args: []string{"--config", "/nonexistent/ingestd.json"}, want: `reading config file`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dataDir := filepath.Join(t.TempDir(), "data")
			args := []string{"--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--data-dir", dataDir}
			if tc.json != "" {
				args = append(args, "--config", writeConfig(t, tc.json))
			}
			args = append(args, tc.args...)
			start := time.Now()
			code, stdout, stderr := runCmd(t, args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2; stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, stderr)
			}
			if strings.Contains(stderr, "listening") || stdout != "" {
				t.Errorf("a bad configuration started serving; stdout %q, stderr:\n%s", stdout, stderr)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("a bad configuration touched the data directory (stat: %v)", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v to refuse a bad configuration", d)
			}
		})
	}
}

// TestConfigFileAndFlags: settings come from the JSON file, and a flag on
// the command line wins over the file's value for the same setting.
func TestConfigFileAndFlags(t *testing.T) {
	fileTCP, flagTCP, fileMetrics := freePort(t), freePort(t), freePort(t)
	dir := filepath.Join(t.TempDir(), "from-file")
	cfg := writeConfig(t, `{
		"tcp": "`+fileTCP+`",
		"metrics": "`+fileMetrics+`",
		"reactors": 1,
		"sink": "file",
		"data_dir": "`+dir+`",
		"grace": "3s"
	}`)
	d := startProcess(t, "--config", cfg, "--tcp", flagTCP)
	d.waitReady(true)
	if d.tcp != flagTCP {
		t.Errorf("listening on %s, want the flag's %s (the file said %s)", d.tcp, flagTCP, fileTCP)
	}
	if d.metrics != fileMetrics {
		t.Errorf("metrics on %s, want the file's %s", d.metrics, fileMetrics)
	}
	if !regexp.MustCompile(`msg="ingest listening".* reactors=1 `).MatchString(d.stderr.String()) {
		t.Errorf("want reactors=1 from the file in the log:\n%s", d.stderr.String())
	}
	if c, err := net.DialTimeout("tcp", fileTCP, time.Second); err == nil {
		c.Close()
		t.Errorf("something listens on the file's address %s, overridden by --tcp", fileTCP)
	}
	if code, _ := httpGet(t, fileMetrics, "/healthz"); code != 200 {
		t.Errorf("/healthz on the file's metrics address: %d", code)
	}
	sendAndAck(t, flagTCP, 3, 5)
	d.signal(syscall.SIGTERM)
	if code := d.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, d.stderr.String())
	}
	if !strings.Contains(d.stderr.String(), "msg=draining grace=3s") {
		t.Errorf("want the file's grace of 3s in the draining line:\n%s", d.stderr.String())
	}
	// The log went to the file's data_dir.
	if n := len(logContents(t, dir)); n != 5 {
		t.Errorf("%d records in the file's data_dir, want 5", n)
	}
}

// TestHelpExits0: -h prints the flags and is not an error.
func TestHelpExits0(t *testing.T) {
	code, _, stderr := runCmd(t, "-h")
	if code != 0 {
		t.Errorf("ingestd -h: exit status %d, want 0", code)
	}
	for _, f := range []string{"-tcp", "-data-dir", "-overload", "-config"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("ingestd -h does not mention %s:\n%s", f, stderr)
		}
	}
}

// TestStartupFailures: problems found while starting (not in the settings
// themselves) exit 1 with a message naming the cause, and release the data
// directory so that a corrected start works.
func TestStartupFailures(t *testing.T) {
	dir := t.TempDir()
	first := startServe(t, dir)

	t.Run("data dir in use", func(t *testing.T) {
		code, _, stderr := runCmd(t, "--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--data-dir", dir)
		if code != 1 || !strings.Contains(stderr, "is another file sink using it?") {
			t.Errorf("second ingestd on one data dir: status %d, want 1 and a lock message; stderr:\n%s", code, stderr)
		}
	})
	t.Run("tcp address in use", func(t *testing.T) {
		other := t.TempDir()
		code, _, stderr := runCmd(t, "--tcp", first.tcp, "--metrics", "127.0.0.1:0", "--data-dir", other)
		if code != 1 || !strings.Contains(stderr, "address already in use") {
			t.Errorf("tcp address in use: status %d, want 1 and the cause; stderr:\n%s", code, stderr)
		}
		// The sink it opened was closed again: the directory is free.
		d := startServe(t, other)
		d.stop(10 * time.Second)
	})
	t.Run("metrics address in use", func(t *testing.T) {
		other := t.TempDir()
		code, _, stderr := runCmd(t, "--tcp", "127.0.0.1:0", "--metrics", first.metrics, "--data-dir", other)
		if code != 1 || !strings.Contains(stderr, "metrics listener") || !strings.Contains(stderr, "address already in use") {
			t.Errorf("metrics address in use: status %d, want 1 and the cause; stderr:\n%s", code, stderr)
		}
		d := startServe(t, other)
		d.stop(10 * time.Second)
	})
	time.Sleep(minUptime - time.Since(first.readyAt))
	first.signal(syscall.SIGINT) // SIGINT drains like SIGTERM
	if code := first.wait(10 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGINT, want 0", code)
	}
	if !strings.Contains(first.stderr.String(), "msg=draining") {
		t.Errorf("SIGINT did not drain:\n%s", first.stderr.String())
	}
}

// TestBugMaxPayloadZeroPassesValidation: --max-payload 0 passes validate
// (it only refuses < 0), but ingest.NewServer reads 0 as "default, 1 MiB"
// (its log line says max_payload=1048576). So the --queue-bytes check in
// validate compares against 0 and lets any queue size through, and
// NewServer then refuses the combination with an internal error: exit
// status 1 ("ingestd failed"), after the file sink already created the
// data directory, instead of status 2 with a message about the flags.
// (And --max-payload 0 on its own silently means 1 MiB, where the flag's
// help says "largest DATA payload in bytes".)
func TestRegressionMaxPayloadZeroPassesValidation(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	code, _, stderr := runCmd(t, "--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--data-dir", dataDir,
		"--max-payload", "0", "--queue-bytes", "1000")
	if code != 2 || !strings.Contains(stderr, "--max-payload") {
		t.Errorf("--max-payload 0 --queue-bytes 1000: exit status %d, want 2 and a message about --max-payload; stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the refused configuration created the data directory (stat: %v)", err)
	}
}

// TestBugSignalRightAfterStartKills: serve logs "ingest listening" and
// "metrics listening" - and already accepts and ACKs connections - before
// it calls signal.NotifyContext. A SIGTERM in that window (an orchestrator
// stopping a pod that just became ready, a supervisor's quick restart)
// gets Go's default action: the process dies by the signal, with no drain,
// no GOAWAY, the sink not closed, and a non-zero status. Fix: install the
// signal handling first thing in run/serve (before opening the sink and
// the listeners) and hand the context down, so that a signal during
// start-up either aborts the start-up cleanly or drains right after it.
//
// The test starts ingestd and sends SIGTERM the moment the listeners are
// logged, up to 20 times, and requires exit status 0 every time.
func TestRegressionSignalRightAfterStartKills(t *testing.T) {
	for i := 0; i < 20; i++ {
		d := startProcess(t, "--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--reactors", "1",
			"--data-dir", t.TempDir())
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(d.stderr.String(), `msg="metrics listening"`) {
			if time.Now().After(deadline) {
				t.Fatalf("not ready after 10s; stderr:\n%s", d.stderr.String())
			}
			time.Sleep(200 * time.Microsecond)
		}
		d.signal(syscall.SIGTERM)
		if code := d.wait(10 * time.Second); code != 0 {
			t.Fatalf("start %d: SIGTERM right after \"metrics listening\" ended ingestd with status %d (-1: killed by the signal), want a drain and 0; stderr:\n%s",
				i+1, code, d.stderr.String())
		}
	}
}

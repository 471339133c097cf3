package http1

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// curl runs curl with args (plus -sS and a time limit) and returns its
// stdout, and stderr.
func curl(t *testing.T, stdin []byte, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "20"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// TestCurl: curl as a client: GET, keep-alive across URLs, HEAD, HTTP/1.0,
// a chunked upload streamed back, a large upload with Expect:
// 100-continue.
func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (command -v curl finds nothing): skipping the curl client tests")
	}
	s := startServer(t, Config{}, router{})
	base := urlOf(s, "")

	if out, _ := curl(t, nil, base+"/"); out != "Hello, World!" {
		t.Fatalf("GET /: %q", out)
	}

	// Two URLs in one run share a connection.
	before := s.Group().Stats().Accepted
	out, errs := curl(t, nil, "-v", base+"/target?a", base+"/target?b")
	if out != "/target?a/target?b" {
		t.Fatalf("two URLs: %q", out)
	}
	if got := s.Group().Stats().Accepted - before; got != 1 {
		t.Fatalf("curl opened %d connections for two URLs, want 1 (stderr:\n%s)", got, errs)
	}

	out, _ = curl(t, nil, "-I", base+"/")
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || !strings.Contains(out, "Content-Length: 13\r\n") {
		t.Fatalf("HEAD: %q", out)
	}

	out, _ = curl(t, nil, "--http1.0", "-i", base+"/")
	if !strings.HasPrefix(out, "HTTP/1.0 200 OK\r\n") || !strings.HasSuffix(out, "Hello, World!") {
		t.Fatalf("HTTP/1.0: %q", out)
	}

	// -T - uploads stdin chunked.
	data := bytes.Repeat([]byte("curl streams this body chunked. "), 100000) // 3.2 MB
	out, errs = curl(t, data, "-v", "-T", "-", "-X", "POST", base+"/echo")
	if out != string(data) {
		t.Fatalf("chunked echo: %d bytes back, %d sent", len(out), len(data))
	}
	if !strings.Contains(errs, "Transfer-Encoding: chunked") {
		t.Fatalf("curl did not upload chunked:\n%s", errs)
	}

	// A file upload over 1 MiB: curl sends Expect: 100-continue.
	f := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs = curl(t, nil, "-v", "--data-binary", "@"+f, base+"/len")
	if out != "n="+strconv.Itoa(len(data)) {
		t.Fatalf("upload: %q", out)
	}
	if !strings.Contains(errs, "100 Continue") {
		t.Logf("curl did not use Expect: 100-continue (stderr:\n%s)", errs)
	}
}

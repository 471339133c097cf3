package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/gyre-io/gyre/bench/internal/harness"
)

// By default the gyre server runs on io_uring, as before -engine, and
// gyre-epoll joins the servers.
func TestRunConfigDefaults(t *testing.T) {
	var stderr bytes.Buffer
	cfg, code := runConfig(nil, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if cfg.Engine != harness.EngineIOUring {
		t.Errorf("engine %q, want io_uring", cfg.Engine)
	}
	if !slices.Equal(cfg.Servers, []string{"gyre", "gyre-epoll", "gnet", "net"}) {
		t.Errorf("servers %v", cfg.Servers)
	}
	if cfg.Cells != nil || cfg.Runs != 3 {
		t.Errorf("cells %v, runs %d", cfg.Cells, cfg.Runs)
	}
}

func TestRunConfigEngineAndCells(t *testing.T) {
	var stderr bytes.Buffer
	cfg, code := runConfig([]string{"-engine", "uring", "-cells", "http-c64, idle-*", "-servers", "gyre,net"}, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if cfg.Engine != harness.EngineIOUring || !slices.Equal(cfg.Cells, []string{"http-c64", "idle-*"}) || !slices.Equal(cfg.Servers, []string{"gyre", "net"}) {
		t.Errorf("engine %q, cells %v, servers %v", cfg.Engine, cfg.Cells, cfg.Servers)
	}
	for _, e := range []string{"epoll", "net", "auto"} {
		if cfg, code := runConfig([]string{"-engine", e}, &stderr); code != 0 || cfg.Engine != e {
			t.Errorf("-engine %s: exit %d, engine %q", e, code, cfg.Engine)
		}
	}
	stderr.Reset()
	if _, code := runConfig([]string{"-engine", "kqueue"}, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown engine "kqueue"`) {
		t.Errorf("-engine kqueue: exit %d, %q", code, stderr.String())
	}
}

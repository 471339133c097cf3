package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// config is the parsed command line. Fields are fixed once parsing is done.
type config struct {
	Addr      string
	Transport string
	// Session: every load stream opens a producer session (HELLO, then
	// WELCOME) before its first DATA frame.
	Session bool
	Conns   int
	// Duration is the measured send phase (after Warmup); 0 means no time
	// limit (--messages bounds the run).
	Duration time.Duration
	// Messages is the number of DATA frames per connection; 0 means no
	// count limit (--duration bounds the run).
	Messages uint64
	// SizeMin..SizeMax is the payload size range in bytes (equal for a
	// fixed size); SizeSpec is its canonical text ("128" or "64-1024").
	SizeMin, SizeMax int
	SizeSpec         string
	Window           int
	// Rate is the target in messages/s over all connections (0: as fast
	// as the window allows). With --burst it is the rate during ON periods.
	Rate float64
	// BurstOn/BurstOff: send only during ON periods (both 0: always).
	BurstOn, BurstOff time.Duration
	SlowFraction      float64
	SlowAfter         time.Duration
	Warmup            time.Duration
	JSON              bool
	Progress          bool
	ConnectTimeout    time.Duration
	DrainTimeout      time.Duration
	// DialParallel bounds the connection attempts in flight.
	DialParallel int

	// QUIC (--transport quic). QUICStreams is "reuse" (Streams long-lived
	// streams per connection, each a load stream) or "per-message" (a
	// stream per DATA frame, at most Streams at once per connection).
	QUICStreams string
	Streams     int
	ZeroRTT     bool
	Insecure    bool
	PinSHA256   string
	// Kill drops this fraction of the QUIC connections without
	// CONNECTION_CLOSE, KillAfter into the run.
	Kill      float64
	KillAfter time.Duration
	// QUICSockets > 0: the connections share that many UDP sockets (one
	// quic.Transport each), round-robin; 0: a socket per connection.
	QUICSockets int
	// QUICKeepAlive is the PING interval of an otherwise silent QUIC
	// connection. With thousands of connections on one load core, every
	// PING is work on both sides; it only has to be shorter than the
	// server's idle timeout.
	QUICKeepAlive time.Duration
	// CPUProfile: write the load client's own CPU profile here, to tell
	// whether the client or the server limits a run.
	CPUProfile string

	// Ramp spreads the connections' starts: load stream i of N starts
	// sending at i*Ramp/N, and its --rate pacing is shifted by as much.
	Ramp time.Duration
	// Hold keeps the connections open and idle this long once every
	// message is answered (0: close at once).
	Hold time.Duration
	// ServerPID > 0: the server's process, whose CPU time is read from
	// /proc (same host only) and reported.
	ServerPID int
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func badUsage(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// Defaults (documented in the flag help).
const (
	defaultAddr           = "127.0.0.1:7400"
	defaultQUICAddr       = "127.0.0.1:7401"
	maxStreams            = 1024
	defaultConns          = 64
	defaultDuration       = 10 * time.Second
	defaultSize           = "128"
	defaultWindow         = 256
	defaultSlowAfter      = 200 * time.Millisecond
	defaultConnectTimeout = 5 * time.Second
	defaultQUICKeepAlive  = 10 * time.Second
	defaultDrainTimeout   = 5 * time.Second
	defaultDialParallel   = 256
	maxConns              = 1 << 20
	maxQUICSockets        = 1 << 16
	maxWindow             = 1 << 20
)

// parseFlags parses args. stderrIsTerminal decides the --progress default.
// A returned error is a *usageError, or flag.ErrHelp for -h/--help.
func parseFlags(args []string, stderr io.Writer, stderrIsTerminal bool) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("ingest-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ingest-load [flags]\n\n"+
			"Load client for the gyre ingest node (ingest-v1). Each connection pipelines DATA\n"+
			"frames up to --window unanswered and checks that every one gets an ACK or a NACK.\n"+
			"Exit status: 0 all answered and no errors, 1 errors or unanswered messages, 2 bad flags.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Addr, "addr", defaultAddr, "ingest node address `HOST:PORT`")
	fs.StringVar(&cfg.Transport, "transport", "tcp", "transport: tcp or quic (then --addr defaults to "+defaultQUICAddr+")")
	fs.BoolVar(&cfg.Session, "session", false, "open a producer session on every load stream (HELLO and WELCOME before the first DATA), to measure what sessions cost (docs/protocol.md section 5)")
	fs.StringVar(&cfg.QUICStreams, "quic-streams", "reuse", "quic: reuse (--streams long-lived streams per connection, each with its own --window) or per-message (a stream per DATA frame: DATA, FIN)")
	fs.IntVar(&cfg.Streams, "streams", 1, "quic: concurrent streams per connection (reuse: streams, each a load stream; per-message: messages in flight on their own streams)")
	fs.BoolVar(&cfg.ZeroRTT, "0rtt", false, "quic: resume with 0-RTT (one priming handshake fills the session cache and token store first); reports how many connections used it")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "quic: do not verify the server certificate (development)")
	fs.StringVar(&cfg.PinSHA256, "pin-sha256", "", "quic: accept only the server certificate with this SHA-256 (`HEX`, as ingestd logs for its generated certificate)")
	fs.Float64Var(&cfg.Kill, "kill", 0, "quic: `FRACTION` of the connections to drop abruptly mid-run, without CONNECTION_CLOSE (their UDP sockets are closed), to watch the server reclaim them; reported apart, not errors")
	fs.DurationVar(&cfg.KillAfter, "kill-after", 0, "quic: when --kill drops them (default: half of --duration after the warmup; 100ms with --messages only)")
	fs.IntVar(&cfg.QUICSockets, "quic-sockets", 0, "quic: `N` UDP sockets (one QUIC transport each) shared round-robin by all connections; 0: a socket per connection (then --conns counts against the open-file limit). Excludes --kill and --0rtt")
	fs.DurationVar(&cfg.Ramp, "ramp", 0, "spread the starts over this long: connection i of N starts sending at i×D/N, and its --rate pacing is shifted by as much, so connections do not send in lockstep (keep --warmup >= --ramp to measure them all)")
	fs.DurationVar(&cfg.Hold, "hold", 0, "once every message is answered, keep the connections open and idle this long before closing them (to measure the server's memory per connection); stderr says \"ingest-load: holding N connections\" when it starts; SIGINT ends it early")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "`PID` of the server on this host: report its CPU time (/proc/PID/stat) while connecting and during the measured period, and messages per server CPU-second")
	fs.IntVar(&cfg.Conns, "conns", defaultConns, "number of connections")
	fs.DurationVar(&cfg.Duration, "duration", defaultDuration, "how long to send, after --warmup (default when --messages is not given)")
	messages := fs.Int64("messages", 0, "DATA frames per connection, then stop (with --duration too: whichever comes first)")
	size := fs.String("size", defaultSize, "payload size in bytes: `N` fixed, or MIN-MAX uniformly random")
	fs.IntVar(&cfg.Window, "window", defaultWindow, "unanswered messages per connection (1: wait for each ACK before the next DATA)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "target messages/s over all connections (0: as fast as the window allows; with --burst: the rate while ON)")
	burst := fs.String("burst", "", "bursty load `ON/OFF`, e.g. 200ms/800ms: send only during the ON part of each period")
	fs.Float64Var(&cfg.SlowFraction, "slow-clients", 0, "`FRACTION` of the connections that stop reading their acks after --slow-after (the server is expected to disconnect them; reported apart, not errors)")
	fs.DurationVar(&cfg.SlowAfter, "slow-after", defaultSlowAfter, "when slow clients stop reading, from the start of the run")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "initial period excluded from throughput and latency (messages are still verified)")
	fs.BoolVar(&cfg.JSON, "json", false, "print the results as one JSON object on stdout, nothing else")
	fs.BoolVar(&cfg.Progress, "progress", stderrIsTerminal, "show a progress bar on stderr (default: on when stderr is a terminal, except with --json)")
	fs.DurationVar(&cfg.QUICKeepAlive, "quic-keepalive", defaultQUICKeepAlive, "quic: PING a connection that sent nothing for this long (keep it below the server's idle timeout, 30s for ingestd)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the load client's CPU profile to `FILE`")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", defaultConnectTimeout, "timeout of each connection attempt")
	fs.IntVar(&cfg.DialParallel, "dial-parallel", defaultDialParallel, "connection attempts in flight at most (a quic-go server refuses connections whose handshake completed while its accept queue, 32, is full)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", defaultDrainTimeout, "after sending stops, how long to wait for outstanding acks")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		// The flag package has printed the problem and the usage.
		return cfg, &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return cfg, badUsage("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if cfg.JSON && !set["progress"] {
		cfg.Progress = false
	}
	if cfg.Transport == "quic" && !set["addr"] {
		cfg.Addr = defaultQUICAddr
	}
	if cfg.Transport != "quic" {
		for _, f := range []string{"quic-streams", "streams", "0rtt", "insecure", "pin-sha256", "kill", "kill-after", "quic-sockets"} {
			if set[f] {
				return cfg, badUsage("--%s needs --transport quic", f)
			}
		}
	}
	if cfg.Kill > 0 && !set["kill-after"] {
		cfg.KillAfter = 100 * time.Millisecond
		if cfg.Duration > 0 {
			cfg.KillAfter = cfg.Warmup + cfg.Duration/2
		}
	}
	if set["messages"] {
		if *messages < 1 {
			return cfg, badUsage("--messages %d: want >= 1", *messages)
		}
		cfg.Messages = uint64(*messages)
		if !set["duration"] {
			cfg.Duration = 0 // only the count bounds the run
		}
	}
	if set["duration"] && cfg.Duration <= 0 {
		return cfg, badUsage("--duration %v: want > 0", cfg.Duration)
	}
	var err error
	if cfg.SizeMin, cfg.SizeMax, err = parseSize(*size); err != nil {
		return cfg, err
	}
	cfg.SizeSpec = formatSize(cfg.SizeMin, cfg.SizeMax)
	if cfg.BurstOn, cfg.BurstOff, err = parseBurst(*burst); err != nil {
		return cfg, err
	}
	return cfg, validate(cfg)
}

func validate(cfg config) error {
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return badUsage("--addr %q: %v", cfg.Addr, err)
	}
	switch {
	case cfg.Transport != "tcp" && cfg.Transport != "quic":
		return badUsage("--transport %q: want tcp or quic", cfg.Transport)
	case cfg.Conns < 1 || cfg.Conns > maxConns:
		return badUsage("--conns %d: want 1..%d", cfg.Conns, maxConns)
	case cfg.QUICStreams != "reuse" && cfg.QUICStreams != "per-message":
		return badUsage("--quic-streams %q: want reuse or per-message", cfg.QUICStreams)
	case cfg.Streams < 1 || cfg.Streams > maxStreams:
		return badUsage("--streams %d: want 1..%d", cfg.Streams, maxStreams)
	case cfg.loadStreams() > maxConns:
		return badUsage("--conns %d x --streams %d: want at most %d streams", cfg.Conns, cfg.Streams, maxConns)
	case cfg.Insecure && cfg.PinSHA256 != "":
		return badUsage("--insecure and --pin-sha256 exclude each other")
	case math.IsNaN(cfg.Kill) || cfg.Kill < 0 || cfg.Kill >= 1:
		return badUsage("--kill %v: want a fraction in [0, 1)", cfg.Kill)
	case cfg.KillAfter < 0:
		return badUsage("--kill-after %v: want >= 0", cfg.KillAfter)
	case cfg.QUICSockets < 0 || cfg.QUICSockets > maxQUICSockets:
		return badUsage("--quic-sockets %d: want 0..%d", cfg.QUICSockets, maxQUICSockets)
	case cfg.QUICSockets > 0 && cfg.Kill > 0:
		return badUsage("--kill needs a UDP socket per connection (--quic-sockets 0): it drops a connection by closing its socket")
	case cfg.QUICSockets > 0 && cfg.ZeroRTT:
		return badUsage("--0rtt needs a UDP socket per connection (--quic-sockets 0): the early streams are opened while the socket's input is held back")
	case cfg.Ramp < 0:
		return badUsage("--ramp %v: want >= 0", cfg.Ramp)
	case cfg.Hold < 0:
		return badUsage("--hold %v: want >= 0", cfg.Hold)
	case cfg.ServerPID < 0:
		return badUsage("--server-pid %d: want a process id", cfg.ServerPID)
	case cfg.QUICStreams == "per-message" && cfg.SlowFraction > 0:
		return badUsage("--slow-clients needs --quic-streams reuse (a per-message client has no stream to stop reading)")
	case cfg.Session && cfg.Transport == "quic" && cfg.QUICStreams == "per-message":
		return badUsage("--session needs --quic-streams reuse (a stream per message would open a session per message)")
	case cfg.Window < 1 || cfg.Window > maxWindow:
		return badUsage("--window %d: want 1..%d", cfg.Window, maxWindow)
	case math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) || cfg.Rate < 0:
		return badUsage("--rate %v: want a number >= 0", cfg.Rate)
	case math.IsNaN(cfg.SlowFraction) || cfg.SlowFraction < 0 || cfg.SlowFraction >= 1:
		return badUsage("--slow-clients %v: want a fraction in [0, 1)", cfg.SlowFraction)
	case cfg.SlowAfter < 0:
		return badUsage("--slow-after %v: want >= 0", cfg.SlowAfter)
	case cfg.Warmup < 0:
		return badUsage("--warmup %v: want >= 0", cfg.Warmup)
	case cfg.QUICKeepAlive <= 0:
		return badUsage("--quic-keepalive %v: want > 0", cfg.QUICKeepAlive)
	case cfg.ConnectTimeout <= 0:
		return badUsage("--connect-timeout %v: want > 0", cfg.ConnectTimeout)
	case cfg.DialParallel < 1:
		return badUsage("--dial-parallel %d: want >= 1", cfg.DialParallel)
	case cfg.DrainTimeout <= 0:
		return badUsage("--drain-timeout %v: want > 0", cfg.DrainTimeout)
	case cfg.Duration < 0:
		return badUsage("--duration %v: want > 0", cfg.Duration)
	case cfg.Duration == 0 && cfg.Messages == 0:
		return badUsage("nothing bounds the run: give --duration or --messages")
	}
	return nil
}

// parseSize parses "N" or "MIN-MAX" (bytes, MIN <= MAX).
func parseSize(s string) (lo, hi int, err error) {
	loS, hiS, ranged := strings.Cut(strings.TrimSpace(s), "-")
	lo, err = parseBytes(loS)
	if err != nil {
		return 0, 0, badUsage("--size %q: %v (want N or MIN-MAX in bytes)", s, err)
	}
	hi = lo
	if ranged {
		if hi, err = parseBytes(hiS); err != nil {
			return 0, 0, badUsage("--size %q: %v (want N or MIN-MAX in bytes)", s, err)
		}
		if lo > hi {
			return 0, 0, badUsage("--size %q: MIN %d is above MAX %d", s, lo, hi)
		}
	}
	return lo, hi, nil
}

func parseBytes(s string) (int, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte count", s)
	}
	if n > ingest.MaxFramePayload {
		return 0, fmt.Errorf("%d bytes is more than a frame can carry (%d)", n, uint64(ingest.MaxFramePayload))
	}
	return int(n), nil
}

func formatSize(lo, hi int) string {
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
}

// parseBurst parses "ON/OFF" durations, both > 0; "" means no bursts.
func parseBurst(s string) (on, off time.Duration, err error) {
	if s == "" {
		return 0, 0, nil
	}
	onS, offS, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, badUsage("--burst %q: want ON/OFF durations, e.g. 200ms/800ms", s)
	}
	if on, err = time.ParseDuration(strings.TrimSpace(onS)); err != nil || on <= 0 {
		return 0, 0, badUsage("--burst %q: ON %q must be a duration > 0, e.g. 200ms/800ms", s, onS)
	}
	if off, err = time.ParseDuration(strings.TrimSpace(offS)); err != nil || off <= 0 {
		return 0, 0, badUsage("--burst %q: OFF %q must be a duration > 0, e.g. 200ms/800ms", s, offS)
	}
	return on, off, nil
}

// burstSpec is the canonical text of the burst setting ("" when off).
func (c config) burstSpec() string {
	if c.BurstOn == 0 {
		return ""
	}
	return c.BurstOn.String() + "/" + c.BurstOff.String()
}

// loadStreams is the number of load streams (each with a writer, a reader
// and its own window): the connections, times --streams in QUIC reuse mode.
func (c config) loadStreams() int {
	if c.Transport == "quic" && c.QUICStreams == "reuse" {
		return c.Conns * c.Streams
	}
	return c.Conns
}

// slowConns is the number of slow clients: FRACTION of the connections,
// rounded, at least one when FRACTION > 0, and always leaving one normal
// connection (so the run has something to measure and to end it).
func (c config) slowConns() int {
	if c.SlowFraction <= 0 {
		return 0
	}
	n := max(int(math.Round(c.SlowFraction*float64(c.loadStreams()))), 1)
	return min(n, c.loadStreams()-1)
}

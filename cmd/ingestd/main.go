// Command ingestd is gyre's ingest node: it accepts ingest-v1 frames over
// TCP on io_uring reactors and over QUIC (--quic, see docs/quic.md), stores
// them through a sink (an fsynced, segmented log by default) and
// acknowledges each message only after the sink has accepted it.
//
//	ingestd [flags]                 run the node
//	ingestd read --data-dir DIR     print or count the records stored in a log
//
// Bad configuration exits with status 2 and a message saying what is wrong.
// SIGINT/SIGTERM drain: stop accepting, send GOAWAY once every queued
// message is acknowledged, write the queues to the sink, exit 0.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/gyre-io/gyre/ingest"
	"github.com/gyre-io/gyre/ingest/natssink"
	"github.com/gyre-io/gyre/quicbridge"
	"github.com/gyre-io/gyre/reactor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// exit codes
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// config holds every setting; flags and the optional JSON config file
// fill it (flags win).
type config struct {
	TCP           string        `json:"tcp"`
	Engine        string        `json:"engine"`
	Reactors      int           `json:"reactors"`
	Sink          string        `json:"sink"`
	DataDir       string        `json:"data_dir"`
	MaxPayload    int           `json:"max_payload"`
	QueueMessages int           `json:"queue_messages"`
	QueueBytes    int           `json:"queue_bytes"`
	Overload      string        `json:"overload"`
	IdleTimeout   time.Duration `json:"idle_timeout"`
	FrameTimeout  time.Duration `json:"frame_timeout"`
	MaxConns      int           `json:"max_conns"`
	FrameMemory   int64         `json:"frame_memory"`
	SessionTTL    time.Duration `json:"session_ttl"`
	MaxSessions   int           `json:"max_sessions"`
	Metrics       string        `json:"metrics"`
	Pprof         bool          `json:"pprof"`
	LogLevel      string        `json:"log_level"`
	Grace         time.Duration `json:"grace"`
	SyncBytes     int           `json:"sync_bytes"`
	SyncInterval  time.Duration `json:"sync_interval"`
	SegmentBytes  int64         `json:"segment_bytes"`
	RetainBytes   int64         `json:"retain_bytes"`

	// QUIC (docs/quic.md). QUIC "" disables it.
	QUIC             string        `json:"quic"`
	TLSCert          string        `json:"tls_cert"`
	TLSKey           string        `json:"tls_key"`
	TLSTicketKeyFile string        `json:"tls_ticket_key_file"`
	QUIC0RTT         bool          `json:"quic_0rtt"`
	QUICMaxConns     int           `json:"quic_max_conns"`
	QUICMaxStreams   int64         `json:"quic_max_streams"`
	QUICStreamWindow uint64        `json:"quic_stream_window"`
	QUICConnWindow   uint64        `json:"quic_conn_window"`
	QUICIdleTimeout  time.Duration `json:"quic_idle_timeout"`
	QUICBufferMemory int64         `json:"quic_buffer_memory"`
	QUICUDPBuffer    int           `json:"quic_udp_buffer"`

	// JetStream sink (--sink jetstream, docs/scale-out.md). NATSURL is a
	// comma-separated list.
	NATSURL      string `json:"nats_url"`
	Stream       string `json:"stream"`
	Subject      string `json:"subject"`
	NATSCreds    string `json:"nats_creds"`
	NATSNkey     string `json:"nats_nkey"`
	NATSUser     string `json:"nats_user"`
	NATSPassword string `json:"nats_password"`
	NATSToken    string `json:"nats_token"`
	NATSTLSCA    string `json:"nats_tls_ca"`
	NATSTLSCert  string `json:"nats_tls_cert"`
	NATSTLSKey   string `json:"nats_tls_key"`
	// NATSSessionBucket is the key-value bucket of the producer sessions
	// ("": the stream's name + "_sessions").
	NATSSessionBucket string `json:"nats_session_bucket"`
}

// defaultIdleTimeout closes TCP connections silent for 5 minutes: long
// enough for any producer that batches or pauses between bursts (clients
// that hold a connection longer send PING), short enough that abandoned
// connections do not pile up toward the descriptor limit.
const defaultIdleTimeout = 5 * time.Minute

func defaults() config {
	return config{
		TCP:           "127.0.0.1:7400",
		Engine:        "auto",
		Reactors:      runtime.NumCPU(),
		Sink:          "file",
		DataDir:       "./data",
		MaxPayload:    ingest.DefaultMaxPayload,
		QueueMessages: ingest.DefaultQueueMessages,
		QueueBytes:    ingest.DefaultQueueBytes,
		Overload:      "block",
		IdleTimeout:   defaultIdleTimeout,
		FrameTimeout:  ingest.DefaultFrameTimeout,
		FrameMemory:   ingest.DefaultFrameMemory,
		SessionTTL:    ingest.DefaultSessionTTL,
		MaxSessions:   ingest.DefaultMaxSessions,
		Metrics:       "127.0.0.1:9400",
		LogLevel:      "info",
		Grace:         10 * time.Second,
		SyncBytes:     ingest.DefaultSyncBytes,
		SyncInterval:  ingest.DefaultSyncInterval,
		SegmentBytes:  ingest.DefaultSegmentBytes,
		RetainBytes:   ingest.DefaultRetainBytes,

		QUIC:             quicbridge.DefaultAddr,
		QUIC0RTT:         true,
		QUICMaxConns:     quicbridge.DefaultMaxConns,
		QUICMaxStreams:   quicbridge.DefaultMaxIncomingStreams,
		QUICStreamWindow: quicbridge.DefaultStreamWindow,
		QUICConnWindow:   quicbridge.DefaultConnWindow,
		QUICIdleTimeout:  quicbridge.DefaultIdleTimeout,
		QUICBufferMemory: quicbridge.DefaultBufferMemory,
	}
}

// configError is a configuration problem: exit status 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func badConfig(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "read" {
		return runRead(args[1:], stdout, stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "ingestd: %v\n", err)
		return exitConfig
	}
	log := newLogger(cfg.LogLevel, stderr)
	if err := serve(ctx, cfg, log); err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			fmt.Fprintf(stderr, "ingestd: %v\n", err)
			return exitConfig
		}
		log.Error("ingestd failed", "err", err)
		return exitFail
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := defaults()
	fs := flag.NewFlagSet("ingestd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "JSON config file (keys as the flags, with _ for -); flags override it")
	fs.StringVar(&cfg.TCP, "tcp", cfg.TCP, "TCP listen address")
	fs.StringVar(&cfg.Engine, "engine", cfg.Engine, "the reactors' I/O engine: auto (io_uring where the kernel and seccomp allow it, else epoll, with a warning), io_uring, epoll or net")
	fs.IntVar(&cfg.Reactors, "reactors", cfg.Reactors, "number of reactors (one dispatcher shard each)")
	fs.StringVar(&cfg.Sink, "sink", cfg.Sink, "where messages go: file (fsynced log in --data-dir), jetstream (a NATS JetStream stream: --nats-url, --stream, --subject; docs/scale-out.md) or discard (count and drop; benchmarks)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory of the file sink's log")
	fs.IntVar(&cfg.MaxPayload, "max-payload", cfg.MaxPayload, "largest DATA payload in bytes; larger frames get NACK 2")
	fs.IntVar(&cfg.QueueMessages, "queue-messages", cfg.QueueMessages, "messages per dispatcher shard queue")
	fs.IntVar(&cfg.QueueBytes, "queue-bytes", cfg.QueueBytes, "payload bytes per dispatcher shard queue")
	fs.StringVar(&cfg.Overload, "overload", cfg.Overload, "full queue policy: block (stop reading), reject (NACK 3) or shed (close the biggest)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "close connections silent this long (0: never)")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "TCP: most connections open at once; more are closed as soon as accepted (0: the descriptor limit less 256 kept for the sink, metrics and recovery; negative: no bound)")
	fs.Int64Var(&cfg.FrameMemory, "frame-memory", cfg.FrameMemory, "TCP and QUIC: bytes for frames larger than a receive buffer (16 KiB) while they arrive, all connections together; past it a frame waits with reading paused or gets NACK 3 (>= --max-payload + 16)")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "keep a producer session this long after its connection ended, for the client to resume it (HELLO); after that it must open a new one")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "keep at most this many producer sessions whose connection ended; past it the least recently seen goes first")
	fs.DurationVar(&cfg.FrameTimeout, "frame-timeout", cfg.FrameTimeout, "TCP: close a connection that began a frame and has not finished it this long after (slowloris; bytes trickling in do not extend it; 0: never)")
	fs.StringVar(&cfg.Metrics, "metrics", cfg.Metrics, "address of the /metrics and /healthz HTTP server (empty: off)")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof, "also serve net/http/pprof under /debug/pprof/ on the --metrics server (heap?gc=1 runs a GC first; benchmarks and debugging, not for untrusted networks)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "how long a SIGTERM drain may take before connections are closed")
	fs.IntVar(&cfg.SyncBytes, "sync-bytes", cfg.SyncBytes, "file sink: fsync after this many bytes")
	fs.DurationVar(&cfg.SyncInterval, "sync-interval", cfg.SyncInterval, "file sink: fsync at least this often while writes wait")
	fs.Int64Var(&cfg.SegmentBytes, "segment-bytes", cfg.SegmentBytes, "file sink: rotate segments at this size")
	fs.Int64Var(&cfg.RetainBytes, "retain-bytes", cfg.RetainBytes, "file sink: delete the oldest segments beyond this total")
	fs.StringVar(&cfg.QUIC, "quic", cfg.QUIC, "QUIC (UDP) listen address, ALPN ingest-v1 (empty: no QUIC)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "QUIC: PEM certificate file (without --tls-cert/--tls-key: a generated self-signed certificate for localhost, development only; its SHA-256 is logged)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "QUIC: PEM private key file for --tls-cert")
	fs.StringVar(&cfg.TLSTicketKeyFile, "tls-ticket-key-file", cfg.TLSTicketKeyFile, "QUIC: TLS session ticket keys (64 hex digits a line, first one current; created if missing), so resumption and 0-RTT survive restarts")
	fs.BoolVar(&cfg.QUIC0RTT, "quic-0rtt", cfg.QUIC0RTT, "QUIC: accept 0-RTT data (acknowledged only after the handshake completes)")
	fs.IntVar(&cfg.QUICMaxConns, "quic-max-conns", cfg.QUICMaxConns, "QUIC: most connections at once; more are refused (application error 0x1)")
	fs.Int64Var(&cfg.QUICMaxStreams, "quic-max-streams", cfg.QUICMaxStreams, "QUIC: most open streams per connection (clients wait for more)")
	fs.Uint64Var(&cfg.QUICStreamWindow, "quic-stream-window", cfg.QUICStreamWindow, "QUIC: flow-control receive window per stream, bytes")
	fs.Uint64Var(&cfg.QUICConnWindow, "quic-conn-window", cfg.QUICConnWindow, "QUIC: flow-control receive window per connection, bytes (>= --quic-stream-window)")
	fs.DurationVar(&cfg.QUICIdleTimeout, "quic-idle-timeout", cfg.QUICIdleTimeout, "QUIC: close connections without a packet for this long")
	fs.Int64Var(&cfg.QUICBufferMemory, "quic-buffer-memory", cfg.QUICBufferMemory, "QUIC: bytes for the read buffers of all streams together")
	fs.IntVar(&cfg.QUICUDPBuffer, "quic-udp-buffer", cfg.QUICUDPBuffer, "QUIC: kernel receive buffer of the UDP socket, bytes (0: quic-go's 7 MiB; beyond net.core.rmem_max needs CAP_NET_ADMIN)")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "jetstream sink: NATS server URLs, comma-separated (nats://host:4222, tls://host:4222)")
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "jetstream sink: the JetStream stream that stores the records (it must exist and capture --subject)")
	fs.StringVar(&cfg.Subject, "subject", cfg.Subject, "jetstream sink: the subject records are published on (no wildcards)")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", cfg.NATSCreds, "jetstream sink: NATS user credentials file (JWT and nkey seed)")
	fs.StringVar(&cfg.NATSNkey, "nats-nkey", cfg.NATSNkey, "jetstream sink: file holding an nkey user seed")
	fs.StringVar(&cfg.NATSUser, "nats-user", cfg.NATSUser, "jetstream sink: NATS user name (with --nats-password)")
	fs.StringVar(&cfg.NATSPassword, "nats-password", cfg.NATSPassword, "jetstream sink: NATS password (visible to ps: prefer the config file or --nats-creds)")
	fs.StringVar(&cfg.NATSToken, "nats-token", cfg.NATSToken, "jetstream sink: NATS authentication token")
	fs.StringVar(&cfg.NATSTLSCA, "nats-tls-ca", cfg.NATSTLSCA, "jetstream sink: PEM file of the CAs that sign the NATS servers' certificates (default: the system's)")
	fs.StringVar(&cfg.NATSTLSCert, "nats-tls-cert", cfg.NATSTLSCert, "jetstream sink: PEM client certificate for NATS servers that verify clients (with --nats-tls-key)")
	fs.StringVar(&cfg.NATSTLSKey, "nats-tls-key", cfg.NATSTLSKey, "jetstream sink: PEM private key of --nats-tls-cert")
	fs.StringVar(&cfg.NATSSessionBucket, "nats-session-bucket", cfg.NATSSessionBucket, "jetstream sink: the JetStream key-value bucket that keeps producer sessions for every node (created if missing, with the stream's replicas and --session-ttl; default: the stream's name + _sessions)")
	if err := removedFlag(args); err != nil {
		return cfg, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, badConfig("unexpected arguments %q (subcommand: read)", fs.Args())
	}
	if *configFile != "" {
		fileCfg := defaults()
		if err := loadConfigFile(*configFile, &fileCfg); err != nil {
			return cfg, err
		}
		// Flags given on the command line win over the file.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		applyIfSet(set, &fileCfg, cfg)
		cfg = fileCfg
	}
	return cfg, validate(cfg)
}

// applyIfSet copies into dst the fields whose flags were given.
func applyIfSet(set map[string]bool, dst *config, flags config) {
	pairs := map[string]func(){
		"tcp": func() { dst.TCP = flags.TCP }, "reactors": func() { dst.Reactors = flags.Reactors },
		"engine": func() { dst.Engine = flags.Engine },
		"sink":   func() { dst.Sink = flags.Sink }, "data-dir": func() { dst.DataDir = flags.DataDir },
		"max-payload": func() { dst.MaxPayload = flags.MaxPayload }, "queue-messages": func() { dst.QueueMessages = flags.QueueMessages },
		"queue-bytes": func() { dst.QueueBytes = flags.QueueBytes }, "overload": func() { dst.Overload = flags.Overload },
		"idle-timeout":  func() { dst.IdleTimeout = flags.IdleTimeout },
		"frame-timeout": func() { dst.FrameTimeout = flags.FrameTimeout },
		"max-conns":     func() { dst.MaxConns = flags.MaxConns },
		"frame-memory":  func() { dst.FrameMemory = flags.FrameMemory },
		"session-ttl":   func() { dst.SessionTTL = flags.SessionTTL },
		"max-sessions":  func() { dst.MaxSessions = flags.MaxSessions },
		"metrics":       func() { dst.Metrics = flags.Metrics }, "log-level": func() { dst.LogLevel = flags.LogLevel },
		"pprof": func() { dst.Pprof = flags.Pprof },
		"grace": func() { dst.Grace = flags.Grace }, "sync-bytes": func() { dst.SyncBytes = flags.SyncBytes },
		"sync-interval": func() { dst.SyncInterval = flags.SyncInterval }, "segment-bytes": func() { dst.SegmentBytes = flags.SegmentBytes },
		"retain-bytes": func() { dst.RetainBytes = flags.RetainBytes },
		"quic":         func() { dst.QUIC = flags.QUIC }, "tls-cert": func() { dst.TLSCert = flags.TLSCert },
		"tls-key": func() { dst.TLSKey = flags.TLSKey }, "tls-ticket-key-file": func() { dst.TLSTicketKeyFile = flags.TLSTicketKeyFile },
		"quic-0rtt": func() { dst.QUIC0RTT = flags.QUIC0RTT }, "quic-max-conns": func() { dst.QUICMaxConns = flags.QUICMaxConns },
		"quic-max-streams": func() { dst.QUICMaxStreams = flags.QUICMaxStreams }, "quic-stream-window": func() { dst.QUICStreamWindow = flags.QUICStreamWindow },
		"quic-conn-window": func() { dst.QUICConnWindow = flags.QUICConnWindow }, "quic-idle-timeout": func() { dst.QUICIdleTimeout = flags.QUICIdleTimeout },
		"quic-buffer-memory": func() { dst.QUICBufferMemory = flags.QUICBufferMemory },
		"quic-udp-buffer":    func() { dst.QUICUDPBuffer = flags.QUICUDPBuffer },
		"nats-url":           func() { dst.NATSURL = flags.NATSURL }, "stream": func() { dst.Stream = flags.Stream },
		"subject": func() { dst.Subject = flags.Subject }, "nats-creds": func() { dst.NATSCreds = flags.NATSCreds },
		"nats-nkey": func() { dst.NATSNkey = flags.NATSNkey }, "nats-user": func() { dst.NATSUser = flags.NATSUser },
		"nats-password": func() { dst.NATSPassword = flags.NATSPassword }, "nats-token": func() { dst.NATSToken = flags.NATSToken },
		"nats-tls-ca": func() { dst.NATSTLSCA = flags.NATSTLSCA }, "nats-tls-cert": func() { dst.NATSTLSCert = flags.NATSTLSCert },
		"nats-tls-key": func() { dst.NATSTLSKey = flags.NATSTLSKey }, "nats-session-bucket": func() { dst.NATSSessionBucket = flags.NATSSessionBucket },
	}
	for name, apply := range pairs {
		if set[name] {
			apply()
		}
	}
}

// frameTimeout maps the flag's "0: never" to ServerConfig's "negative: off".
func frameTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// ackDelayRemoved says why --ack-delay (ack_delay), which earlier versions
// took and documented, is refused rather than ignored: a setting that
// does nothing must not look as if it did something.
const ackDelayRemoved = "was removed: it never had an effect (the server sends an ACK as soon as the sink has stored the records it covers, with no delay of its own; see docs/protocol.md, section 4)"

// removedFlag refuses --ack-delay on the command line, with the reason.
func removedFlag(args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "ack-delay" {
			return badConfig("--ack-delay %s; drop it from the command line", ackDelayRemoved)
		}
	}
	return nil
}

// loadConfigFile reads JSON; durations are strings like "5ms".
func loadConfigFile(path string, cfg *config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return badConfig("reading config file: %v", err)
	}
	type alias config
	raw := struct {
		alias
		IdleTimeout     string `json:"idle_timeout"`
		FrameTimeout    string `json:"frame_timeout"`
		Grace           string `json:"grace"`
		SyncInterval    string `json:"sync_interval"`
		QUICIdleTimeout string `json:"quic_idle_timeout"`
		SessionTTL      string `json:"session_ttl"`

		AckDelay json.RawMessage `json:"ack_delay"` // removed: refused, see ackDelayRemoved
	}{alias: alias(*cfg)}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return badConfig("config file %s: %v", path, err)
	}
	if raw.AckDelay != nil {
		return badConfig("config file %s: ack_delay %s; delete the key", path, ackDelayRemoved)
	}
	*cfg = config(raw.alias)
	for _, d := range []struct {
		s   string
		dst *time.Duration
		key string
	}{{raw.IdleTimeout, &cfg.IdleTimeout, "idle_timeout"},
		{raw.FrameTimeout, &cfg.FrameTimeout, "frame_timeout"},
		{raw.Grace, &cfg.Grace, "grace"}, {raw.SyncInterval, &cfg.SyncInterval, "sync_interval"},
		{raw.QUICIdleTimeout, &cfg.QUICIdleTimeout, "quic_idle_timeout"},
		{raw.SessionTTL, &cfg.SessionTTL, "session_ttl"}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return badConfig("config file %s: %s: %v", path, d.key, err)
		}
		*d.dst = v
	}
	return nil
}

func validate(cfg config) error {
	if _, _, err := net.SplitHostPort(cfg.TCP); err != nil {
		return badConfig("--tcp %q: %v", cfg.TCP, err)
	}
	if cfg.Metrics != "" {
		if _, _, err := net.SplitHostPort(cfg.Metrics); err != nil {
			return badConfig("--metrics %q: %v", cfg.Metrics, err)
		}
	} else if cfg.Pprof {
		return badConfig("--pprof needs --metrics (it serves on the metrics server)")
	}
	if _, err := reactor.ParseEngine(cfg.Engine); err != nil {
		return badConfig("--engine %q: want auto, io_uring, epoll or net", cfg.Engine)
	}
	switch {
	case cfg.Reactors < 1 || cfg.Reactors > 1024:
		return badConfig("--reactors %d: want 1..1024", cfg.Reactors)
	case cfg.Sink != "file" && cfg.Sink != "discard" && cfg.Sink != "jetstream":
		return badConfig("--sink %q: want file, jetstream or discard", cfg.Sink)
	case cfg.Sink == "file" && cfg.DataDir == "":
		return badConfig("--data-dir is required with --sink file")
	case cfg.MaxPayload < 1 || cfg.MaxPayload > ingest.MaxFramePayload:
		return badConfig("--max-payload %d: want 1..%d", cfg.MaxPayload, ingest.MaxFramePayload)
	case cfg.QueueMessages < 1:
		return badConfig("--queue-messages %d: want >= 1", cfg.QueueMessages)
	case cfg.QueueBytes < cfg.MaxPayload:
		return badConfig("--queue-bytes %d is smaller than --max-payload %d: a maximal message could never be queued", cfg.QueueBytes, cfg.MaxPayload)
	case cfg.IdleTimeout < 0:
		return badConfig("--idle-timeout %v: want >= 0", cfg.IdleTimeout)
	case cfg.FrameTimeout < 0:
		return badConfig("--frame-timeout %v: want >= 0", cfg.FrameTimeout)
	case cfg.FrameMemory < int64(cfg.MaxPayload)+ingest.HeaderSize:
		return badConfig("--frame-memory %d is smaller than one maximal frame (%d bytes: --max-payload + %d)", cfg.FrameMemory, cfg.MaxPayload+ingest.HeaderSize, ingest.HeaderSize)
	case cfg.SessionTTL <= 0:
		return badConfig("--session-ttl %v: want > 0", cfg.SessionTTL)
	case cfg.MaxSessions < 1:
		return badConfig("--max-sessions %d: want >= 1", cfg.MaxSessions)
	case cfg.Grace <= 0:
		return badConfig("--grace %v: want > 0", cfg.Grace)
	case cfg.SyncBytes < 1 || cfg.SyncInterval <= 0:
		return badConfig("--sync-bytes and --sync-interval must be positive")
	case cfg.SegmentBytes < 1<<16:
		return badConfig("--segment-bytes %d: want >= 65536", cfg.SegmentBytes)
	case cfg.RetainBytes < cfg.SegmentBytes:
		return badConfig("--retain-bytes %d is smaller than --segment-bytes %d", cfg.RetainBytes, cfg.SegmentBytes)
	}
	if _, err := ingest.ParseOverload(cfg.Overload); err != nil {
		return badConfig("--overload %q: want block, reject or shed", cfg.Overload)
	}
	if err := validateQUIC(cfg); err != nil {
		return err
	}
	if err := validateNATS(cfg); err != nil {
		return err
	}
	if _, ok := parseLevel(cfg.LogLevel); !ok {
		return badConfig("--log-level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	return nil
}

// validateQUIC checks the QUIC settings (only when QUIC is on).
func validateQUIC(cfg config) error {
	if cfg.QUIC == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(cfg.QUIC); err != nil {
		return badConfig("--quic %q: %v", cfg.QUIC, err)
	}
	switch {
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return badConfig("--tls-cert and --tls-key must be given together")
	case cfg.QUICMaxConns < 1:
		return badConfig("--quic-max-conns %d: want >= 1", cfg.QUICMaxConns)
	case cfg.QUICMaxStreams < 1:
		return badConfig("--quic-max-streams %d: want >= 1", cfg.QUICMaxStreams)
	case cfg.QUICStreamWindow < 1<<10:
		return badConfig("--quic-stream-window %d: want >= 1024", cfg.QUICStreamWindow)
	case cfg.QUICConnWindow < cfg.QUICStreamWindow:
		return badConfig("--quic-conn-window %d is smaller than --quic-stream-window %d", cfg.QUICConnWindow, cfg.QUICStreamWindow)
	case cfg.QUICIdleTimeout <= 0:
		return badConfig("--quic-idle-timeout %v: want > 0", cfg.QUICIdleTimeout)
	case cfg.QUICBufferMemory < quicbridge.DefaultReadBufferSize:
		return badConfig("--quic-buffer-memory %d: want >= %d (one read buffer)", cfg.QUICBufferMemory, quicbridge.DefaultReadBufferSize)
	case cfg.QUICUDPBuffer < 0 || cfg.QUICUDPBuffer > 1<<30:
		return badConfig("--quic-udp-buffer %d: want 0 (quic-go's default) to 1 GiB", cfg.QUICUDPBuffer)
	}
	return nil
}

// validateNATS checks the jetstream sink's settings (only with --sink
// jetstream).
func validateNATS(cfg config) error {
	if cfg.Sink != "jetstream" {
		return nil
	}
	if cfg.NATSURL == "" {
		return badConfig("--nats-url is required with --sink jetstream (nats://host:4222, comma-separated for several)")
	}
	for i, u := range strings.Split(cfg.NATSURL, ",") {
		if err := natssink.CheckURL(strings.TrimSpace(u)); err != nil {
			return badConfig("--nats-url: URL %d: %v", i+1, err)
		}
	}
	if cfg.Stream == "" {
		return badConfig("--stream is required with --sink jetstream (the JetStream stream that stores the records)")
	}
	if err := natssink.CheckStreamName(cfg.Stream); err != nil {
		return badConfig("--stream %q: %v", cfg.Stream, err)
	}
	if cfg.Subject == "" {
		return badConfig("--subject is required with --sink jetstream (the subject records are published on)")
	}
	if cfg.NATSSessionBucket != "" {
		if err := natssink.CheckBucketName(cfg.NATSSessionBucket); err != nil {
			return badConfig("--nats-session-bucket %q: %v", cfg.NATSSessionBucket, err)
		}
	} else if err := natssink.CheckBucketName(cfg.Stream + natssink.DefaultSessionBucketSuffix); err != nil {
		return badConfig("--stream %q: the session bucket named after it, %q: %v; give --nats-session-bucket", cfg.Stream, cfg.Stream+natssink.DefaultSessionBucketSuffix, err)
	}
	if err := natssink.CheckSubject(cfg.Subject); err != nil {
		return badConfig("--subject %q: %v", cfg.Subject, err)
	}
	auth := 0
	for _, v := range []string{cfg.NATSCreds, cfg.NATSNkey, cfg.NATSUser, cfg.NATSToken} {
		if v != "" {
			auth++
		}
	}
	switch {
	case auth > 1:
		return badConfig("--nats-creds, --nats-nkey, --nats-user and --nats-token: give at most one")
	case cfg.NATSPassword != "" && cfg.NATSUser == "":
		return badConfig("--nats-password needs --nats-user")
	case (cfg.NATSTLSCert == "") != (cfg.NATSTLSKey == ""):
		return badConfig("--nats-tls-cert and --nats-tls-key must be given together")
	}
	return nil
}

// natsConfig builds the jetstream sink's configuration. The files it
// names must be readable: a problem there is a configuration error.
func natsConfig(cfg config, log *slog.Logger) (natssink.Config, error) {
	for _, f := range []struct{ flag, path string }{{"--nats-creds", cfg.NATSCreds}, {"--nats-nkey", cfg.NATSNkey},
		{"--nats-tls-ca", cfg.NATSTLSCA}, {"--nats-tls-cert", cfg.NATSTLSCert}, {"--nats-tls-key", cfg.NATSTLSKey}} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return natssink.Config{}, badConfig("%s: %v", f.flag, err)
		}
		fh.Close()
	}
	var urls []string
	for _, u := range strings.Split(cfg.NATSURL, ",") {
		urls = append(urls, strings.TrimSpace(u))
	}
	return natssink.Config{
		URLs:         urls,
		Stream:       cfg.Stream,
		Subject:      cfg.Subject,
		CredsFile:    cfg.NATSCreds,
		NkeySeedFile: cfg.NATSNkey,
		User:         cfg.NATSUser,
		Password:     cfg.NATSPassword,
		Token:        cfg.NATSToken,
		TLSCAFile:    cfg.NATSTLSCA,
		TLSCertFile:  cfg.NATSTLSCert,
		TLSKeyFile:   cfg.NATSTLSKey,
		// Sessions live in the bucket as long as in the node's table.
		SessionBucket: cfg.NATSSessionBucket,
		SessionTTL:    cfg.SessionTTL,
		Logger:        log,
	}, nil
}

// quicConfig builds the bridge's configuration, reading the certificate and
// the ticket key file (created with a fresh key if missing). Problems are
// configuration errors.
func quicConfig(cfg config, log *slog.Logger) (quicbridge.Config, error) {
	overload, _ := ingest.ParseOverload(cfg.Overload)
	qc := quicbridge.Config{
		Addr:                cfg.QUIC,
		CertFile:            cfg.TLSCert,
		KeyFile:             cfg.TLSKey,
		Disable0RTT:         !cfg.QUIC0RTT,
		MaxConns:            cfg.QUICMaxConns,
		MaxIncomingStreams:  cfg.QUICMaxStreams,
		StreamReceiveWindow: cfg.QUICStreamWindow,
		ConnReceiveWindow:   cfg.QUICConnWindow,
		IdleTimeout:         cfg.QUICIdleTimeout,
		MaxPayload:          cfg.MaxPayload,
		BufferMemory:        cfg.QUICBufferMemory,
		UDPReceiveBuffer:    cfg.QUICUDPBuffer,
		Overload:            overload,
		Logger:              log,
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return qc, badConfig("--tls-cert/--tls-key: %v", err)
		}
		qc.CertFile, qc.KeyFile = "", ""
		qc.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	if path := cfg.TLSTicketKeyFile; path != "" {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := quicbridge.CreateTicketKeyFile(path); err != nil {
				return qc, badConfig("--tls-ticket-key-file: %v", err)
			}
			log.Info("created a TLS session ticket key file; keep it secret", "path", path)
		}
		keys, err := quicbridge.LoadTicketKeys(path)
		if err != nil {
			return qc, badConfig("--tls-ticket-key-file: %v", err)
		}
		qc.TicketKeys = keys
	}
	return qc, nil
}

func parseLevel(s string) (slog.Level, bool) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, false
	}
	return l, true
}

func newLogger(level string, w io.Writer) *slog.Logger {
	l, _ := parseLevel(level)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	// Signals first: a SIGTERM that arrives while the node starts must
	// drain it, not kill it.
	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// QUIC settings that need files (certificate, ticket keys) are read
	// before anything is opened: a problem there is a configuration error.
	var qcfg quicbridge.Config
	if cfg.QUIC != "" {
		var err error
		if qcfg, err = quicConfig(cfg, log); err != nil {
			return err
		}
	}
	var ncfg natssink.Config
	if cfg.Sink == "jetstream" {
		var err error
		if ncfg, err = natsConfig(cfg, log); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var sink ingest.Sink
	// sinkHealth says why the sink cannot store now (nil: it can); the
	// discard sink always can.
	sinkHealth := func() error { return nil }
	switch cfg.Sink {
	case "discard":
		sink = &ingest.DiscardSink{}
	case "file":
		fsync := prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gyre_ingest_fsync_seconds",
			Help:    "Time one group-commit fsync of the file sink took.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		})
		reg.MustRegister(fsync)
		fs, err := ingest.OpenFileSink(ingest.FileSinkConfig{
			Dir:          cfg.DataDir,
			SegmentBytes: cfg.SegmentBytes,
			RetainBytes:  cfg.RetainBytes,
			SyncBytes:    cfg.SyncBytes,
			SyncInterval: cfg.SyncInterval,
			Logger:       log,
			OnSync:       func(d time.Duration, _ int) { fsync.Observe(d.Seconds()) },
		})
		if err != nil {
			return fmt.Errorf("opening the file sink in %s: %w", cfg.DataDir, err)
		}
		sink = fs
		sinkHealth = fs.Health
	case "jetstream":
		// Open returns at once when NATS is unreachable (the sink connects
		// by itself later; /healthz says why meanwhile); the timeout bounds
		// the stream check of a NATS that answers slowly.
		openCtx, cancel := context.WithTimeout(sigCtx, 30*time.Second)
		ns, err := natssink.Open(openCtx, ncfg)
		cancel()
		if err != nil {
			return fmt.Errorf("opening the jetstream sink: %w", err)
		}
		reg.MustRegister(ns.Collector())
		sink = ns
		sinkHealth = ns.Health
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gyre_ingest_sink_healthy",
		Help: "1 while the sink can store records, 0 while it cannot (records get NACK 6; /healthz names the cause).",
	}, func() float64 {
		if sinkHealth() != nil {
			return 0
		}
		return 1
	}))
	overload, _ := ingest.ParseOverload(cfg.Overload)
	engine, _ := reactor.ParseEngine(cfg.Engine) // validated
	srv, err := ingest.NewServer(ingest.ServerConfig{
		Addr:          cfg.TCP,
		Engine:        engine,
		Reactors:      cfg.Reactors,
		MaxPayload:    cfg.MaxPayload,
		QueueMessages: cfg.QueueMessages,
		QueueBytes:    cfg.QueueBytes,
		Overload:      overload,
		IdleTimeout:   cfg.IdleTimeout,
		FrameTimeout:  frameTimeout(cfg.FrameTimeout),
		MaxConns:      cfg.MaxConns,
		FrameMemory:   cfg.FrameMemory,
		SessionTTL:    cfg.SessionTTL,
		MaxSessions:   cfg.MaxSessions,
		Sink:          sink,
		// The discard sink only counts: reactors write to it themselves.
		NonBlockingSink: cfg.Sink == "discard",
		Logger:          log,
	})
	if err != nil {
		_ = sink.Close()
		return err
	}
	reg.MustRegister(srv.Collector())

	var metricsLn net.Listener
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			_ = srv.Close()
			_ = sink.Close()
			return fmt.Errorf("metrics listener: %w", err)
		}
		// A spare descriptor lets it accept when the process has run out
		// (reserve_unix.go).
		metricsLn = withSpareDescriptor(ln)
	}

	// The bridge pushes into the TCP server's dispatcher; it must stop
	// before srv.Shutdown closes that dispatcher (see below).
	var bridge *quicbridge.Bridge
	if cfg.QUIC != "" {
		b, err := quicbridge.Listen(qcfg, srv.Dispatcher())
		if err != nil {
			if metricsLn != nil {
				_ = metricsLn.Close()
			}
			_ = srv.Close()
			_ = sink.Close()
			return fmt.Errorf("quic listener: %w", err)
		}
		bridge = b
		reg.MustRegister(bridge.Collector())
	}

	var metricsSrv *http.Server
	if metricsLn != nil {
		ln := metricsLn
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			if !srv.Accepting() {
				http.Error(w, "draining", http.StatusServiceUnavailable)
				return
			}
			if err := sinkHealth(); err != nil {
				http.Error(w, "storage unavailable: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		})
		// net/http's own messages (an accept failing for want of descriptors
		// and retried, a client's broken request) go to the structured log at
		// debug: they repeat once per scrape while the process is out of
		// descriptors, and gyre_ingest_accept_errors_total counts the cause.
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
		go func() { _ = metricsSrv.Serve(ln) }()
		log.Info("metrics listening", "addr", ln.Addr().String())
	}

	var failed error
	select {
	case <-sigCtx.Done():
		log.Info("draining", "grace", cfg.Grace)
	case <-srv.Reactors().Done():
		failed = srv.Reactors().Wait()
		log.Error("reactors stopped unexpectedly", "err", failed)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Grace)
	defer cancel()
	// QUIC first: srv.Shutdown ends by closing the dispatcher, which the
	// bridge pushes into, so the bridge must be fully stopped before.
	// Both share the grace period.
	if bridge != nil {
		if err := bridge.Shutdown(shutdownCtx); err != nil {
			log.Warn("grace period over; remaining QUIC connections closed", "err", err)
		}
	}
	drainErr := srv.Shutdown(shutdownCtx)
	if drainErr != nil {
		log.Warn("grace period over; remaining connections closed", "err", drainErr)
	}
	sinkErr := sink.Close()
	if metricsSrv != nil {
		_ = metricsSrv.Close()
	}
	st := srv.Stats()
	if bridge != nil {
		qst := bridge.Stats()
		log.Info("stopped", "messages", st.MessagesIn, "acks", st.Acks, "connections", st.ConnsAccepted,
			"quic_messages", qst.MessagesIn, "quic_acks", qst.Acks, "quic_connections", qst.ConnsAccepted)
	} else {
		log.Info("stopped", "messages", st.MessagesIn, "acks", st.Acks, "connections", st.ConnsAccepted)
	}
	if sinkErr != nil {
		return fmt.Errorf("closing the sink: %w", sinkErr)
	}
	if failed != nil {
		return fmt.Errorf("reactors stopped: %w", failed)
	}
	return nil
}

// runRead implements `ingestd read`: print or count stored records. A
// record line is
//
//	TIME conn=CONN session=SESSION seq=SEQ len=LEN "PAYLOAD PREVIEW"
//
// with SESSION the 32 hex digits of the record's session or "-" without
// one; SEQ is then the session's seq.
func runRead(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ingestd read", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "./data", "directory of the log")
	count := fs.Bool("count", false, "print only the number of records and bytes")
	limit := fs.Int("limit", 0, "stop after this many records (0: all)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		fmt.Fprintf(stderr, "ingestd read: %s is not a directory\n", *dir)
		return exitConfig
	}
	var records, bytes int
	errStop := errors.New("limit reached")
	err := ingest.ReadLog(*dir, func(r ingest.Record, ts time.Time) error {
		records++
		bytes += len(r.Payload)
		if !*count {
			fmt.Fprintf(stdout, "%s conn=%d session=%s seq=%d len=%d %q\n", ts.UTC().Format(time.RFC3339Nano), r.Conn, sessionField(r.Session), r.Seq, len(r.Payload), preview(r.Payload))
		}
		if *limit > 0 && records >= *limit {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		fmt.Fprintf(stderr, "ingestd read: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%d records, %d payload bytes\n", records, bytes)
	return exitOK
}

// sessionField is how `ingestd read` prints a record's session: its 32 hex
// digits, or "-" for a record without one (and every record of a version 1
// segment).
func sessionField(id ingest.SessionID) string {
	if id.IsZero() {
		return "-"
	}
	return id.String()
}

func preview(b []byte) []byte {
	if len(b) > 48 {
		return b[:48]
	}
	return b
}

package natssink

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/gyre-io/gyre/ingest"
)

// Defaults for the zero fields of Config.
const (
	// DefaultPublishTimeout bounds the wait for one PubAck. A stream
	// that has not answered in 5 s is stuck (a leader election or a disk
	// stall takes a few seconds at most); the records are then NACKed
	// (code 6) and the client sends them again, under the same
	// Nats-Msg-Id, so one that was stored after all is not stored twice.
	DefaultPublishTimeout = 5 * time.Second
	// DefaultMaxInFlight bounds the records published and not yet
	// PubAcked, over all the Writes of a sink: four dispatcher batches
	// (1024 records each), enough to keep a stream busy across the
	// round trip, and little memory (the payloads are in the dispatcher's
	// queues and the connection's write buffer, not held per record).
	DefaultMaxInFlight = 4096
	// DefaultReconnectWait is the pause between two attempts to reach a
	// NATS server (nats.go adds up to 100 ms of jitter, 1 s with TLS):
	// short, since records get NACK 6 while the sink is not connected.
	DefaultReconnectWait = time.Second
	// DefaultConnectTimeout bounds one connection attempt to one server.
	DefaultConnectTimeout = 2 * time.Second
	// DefaultName is the connection name NATS monitoring shows.
	DefaultName = "gyre-ingestd"
	// DefaultSessionBucketSuffix makes the default session bucket's name:
	// the stream's name followed by it ("INGEST_sessions").
	DefaultSessionBucketSuffix = "_sessions"
)

// Config configures Open. URLs, Stream and Subject are required; every
// zero field takes the documented default. The fields are read once, at
// Open.
type Config struct {
	// URLs are the NATS servers to connect to: "nats://host:4222",
	// "tls://host:4222" or "host:4222", several for a cluster (the
	// client learns the others from the one it reaches). A URL may carry
	// credentials (nats://user:password@host:4222); logs show them
	// redacted.
	URLs []string

	// Stream is the JetStream stream that must store the records, and
	// Subject the subject they are published on; the stream must capture
	// it. Open checks both (when NATS is reachable): a missing stream, or
	// a subject that no stream or another stream captures, is an error
	// that names them. The stream is not created: its replicas, storage
	// and duplicate window are the operator's choice (docs/scale-out.md).
	Stream  string
	Subject string

	// Credentials: at most one of CredsFile (a user credentials file:
	// JWT and nkey seed, as `nats --creds`), NkeySeedFile (a file holding
	// an nkey user seed), User and Password, or Token.
	CredsFile    string
	NkeySeedFile string
	User         string
	Password     string
	Token        string

	// TLS: TLSCAFile is a PEM file of the CAs that sign the servers'
	// certificates (default: the system's roots); TLSCertFile and
	// TLSKeyFile are a client certificate and its key, for servers that
	// verify clients. Any of them makes the connection use TLS.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string

	// PublishTimeout is how long a record may wait for its PubAck
	// (default DefaultPublishTimeout); past it the Write fails.
	PublishTimeout time.Duration

	// MaxInFlight bounds the records published and waiting for their
	// PubAck, over all concurrent Writes (default DefaultMaxInFlight). A
	// Write that finds it reached waits for PubAcks first.
	MaxInFlight int

	// ReconnectWait is the pause between attempts to reach NATS while it
	// is unreachable (default DefaultReconnectWait); ConnectTimeout bounds
	// one attempt (default DefaultConnectTimeout).
	ReconnectWait  time.Duration
	ConnectTimeout time.Duration

	// Name is the connection's name in NATS monitoring (default
	// DefaultName).
	Name string

	// SessionBucket is the JetStream key-value bucket that keeps, for
	// every producer session with stored records, the highest seq up to
	// which the stream holds them all, so that a session resumes on any
	// node writing to the stream (default: Stream followed by
	// DefaultSessionBucketSuffix). Open creates it if it is missing, with
	// the stream's replicas and storage, one value per key, and
	// SessionTTL as its age limit; an existing bucket is used as it is.
	// Letters, digits, '-' and '_' only.
	SessionBucket string
	// SessionTTL is how long the bucket keeps a session after its last
	// stored record, when Open creates it (default
	// ingest.DefaultSessionTTL). Give it the dispatcher's session TTL.
	SessionTTL time.Duration

	// Logger receives connection losses and recoveries, and when the sink
	// stops and starts again being able to store (nil means
	// slog.Default()).
	Logger *slog.Logger
}

// withDefaults checks cfg and fills in its zero fields.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.URLs) == 0 {
		return cfg, errors.New("natssink: no NATS URL given")
	}
	for i, u := range cfg.URLs {
		if err := CheckURL(u); err != nil {
			return cfg, fmt.Errorf("natssink: NATS URL %d (%s): %w", i+1, redactURLs([]string{u}), err)
		}
	}
	if err := CheckStreamName(cfg.Stream); err != nil {
		return cfg, fmt.Errorf("natssink: stream name %q: %w", cfg.Stream, err)
	}
	if err := CheckSubject(cfg.Subject); err != nil {
		return cfg, fmt.Errorf("natssink: subject %q: %w", cfg.Subject, err)
	}
	auth := 0
	for _, set := range []bool{cfg.CredsFile != "", cfg.NkeySeedFile != "", cfg.User != "", cfg.Token != ""} {
		if set {
			auth++
		}
	}
	switch {
	case auth > 1:
		return cfg, errors.New("natssink: give at most one of a credentials file, an nkey seed file, a user and password, or a token")
	case cfg.Password != "" && cfg.User == "":
		return cfg, errors.New("natssink: a password needs a user")
	case (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == ""):
		return cfg, errors.New("natssink: a TLS client certificate and its key go together")
	case cfg.PublishTimeout < 0 || cfg.MaxInFlight < 0 || cfg.ReconnectWait < 0 || cfg.ConnectTimeout < 0 || cfg.SessionTTL < 0:
		return cfg, fmt.Errorf("natssink: negative limit (PublishTimeout %v, MaxInFlight %d, ReconnectWait %v, ConnectTimeout %v, SessionTTL %v)",
			cfg.PublishTimeout, cfg.MaxInFlight, cfg.ReconnectWait, cfg.ConnectTimeout, cfg.SessionTTL)
	}
	if cfg.SessionBucket == "" {
		cfg.SessionBucket = cfg.Stream + DefaultSessionBucketSuffix
		if err := CheckBucketName(cfg.SessionBucket); err != nil {
			return cfg, fmt.Errorf("natssink: the default session bucket name %q (from the stream's): %w; give one", cfg.SessionBucket, err)
		}
	} else if err := CheckBucketName(cfg.SessionBucket); err != nil {
		return cfg, fmt.Errorf("natssink: session bucket name %q: %w", cfg.SessionBucket, err)
	}
	cfg.SessionTTL = cmpOr(cfg.SessionTTL, ingest.DefaultSessionTTL)
	cfg.PublishTimeout = cmpOr(cfg.PublishTimeout, DefaultPublishTimeout)
	cfg.MaxInFlight = cmpOr(cfg.MaxInFlight, DefaultMaxInFlight)
	cfg.ReconnectWait = cmpOr(cfg.ReconnectWait, DefaultReconnectWait)
	cfg.ConnectTimeout = cmpOr(cfg.ConnectTimeout, DefaultConnectTimeout)
	cfg.Name = cmpOr(cfg.Name, DefaultName)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// cmpOr returns v, or def if v is zero.
func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// CheckURL reports whether s is a NATS URL nats.go can dial: host:port,
// or a URL with scheme nats, tls, ws or wss and a host. The error does
// not repeat s (which may hold a password).
func CheckURL(s string) error {
	if s == "" {
		return errors.New("empty URL")
	}
	if strings.ContainsAny(s, " \t,") {
		return errors.New("want one URL (nats://host:port) per entry")
	}
	if !strings.Contains(s, "://") {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q, want nats, tls, ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// redactURLs returns urls as they may be logged: without passwords.
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, s := range urls {
		out[i] = s
		if u, err := url.Parse(s); err == nil && u.User != nil {
			out[i] = u.Redacted()
		}
	}
	return strings.Join(out, ",")
}

// CheckStreamName reports whether name can name a JetStream stream: not
// empty, and none of the characters NATS refuses there (whitespace, '.',
// '*', '>', path separators).
func CheckStreamName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(name, " \t\r\n.*>/\\") {
		return errors.New("no whitespace, '.', '*', '>', '/' or '\\' in a stream name")
	}
	return nil
}

// CheckBucketName reports whether name can name a JetStream key-value
// bucket: not empty, letters, digits, '-' and '_' only.
func CheckBucketName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return errors.New("letters, digits, '-' and '_' only in a key-value bucket name")
		}
	}
	return nil
}

// CheckSubject reports whether subj can be published to: not empty, no
// wildcards ('*', '>'), no whitespace, no empty token.
func CheckSubject(subj string) error {
	if subj == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(subj, " \t\r\n") {
		return errors.New("no whitespace in a subject")
	}
	for tok := range strings.SplitSeq(subj, ".") {
		switch tok {
		case "":
			return errors.New("empty token")
		case "*", ">":
			return errors.New("no wildcards: records are published to one subject")
		}
	}
	return nil
}

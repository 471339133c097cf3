package quicbridge

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gyre-io/gyre/internal/selfsigned"
)

// SelfSignedCert returns an in-memory certificate for localhost, 127.0.0.1
// and ::1 (plus any extra host names or IP addresses given), with a fresh
// ECDSA P-256 key, valid from an hour ago for 90 days. It is for
// development: no client trusts it unless told to, by pinning its
// Fingerprint (PinnedClientTLS) or by skipping verification.
func SelfSignedCert(hosts ...string) (tls.Certificate, error) {
	c, err := selfsigned.Cert("gyre ingest (self-signed, development only)", hosts...)
	if err != nil {
		return c, fmt.Errorf("quicbridge: %w", err)
	}
	return c, nil
}

// Fingerprint returns the SHA-256 of a DER certificate as lower-case hex:
// what ingestd logs for its generated certificate and what
// PinnedClientTLS and `ingest-load --pin-sha256` expect.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// PinnedClientTLS returns a client TLS configuration for the bridge that
// accepts exactly the server certificate whose Fingerprint is fingerprint
// (hex, colons and case ignored) instead of verifying a chain: the way to
// talk to a server with a self-signed certificate without trusting every
// certificate. It sets ALPN and TLS 1.3; set ServerName and
// ClientSessionCache on the result as needed (0-RTT needs both).
func PinnedClientTLS(fingerprint string) (*tls.Config, error) {
	want, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(fingerprint), ":", ""))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("quicbridge: certificate fingerprint %q: want %d hex bytes", fingerprint, sha256.Size)
	}
	return &tls.Config{
		NextProtos: []string{ALPN},
		MinVersion: tls.VersionTLS13,
		// The chain is not verified: VerifyConnection compares the leaf
		// with the pin instead, on every handshake (resumed ones included).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				if cs.DidResume {
					return nil // the pinned certificate was checked when the session was made
				}
				return errors.New("quicbridge: server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("quicbridge: server certificate %x does not match the pinned fingerprint", got)
			}
			return nil
		},
	}, nil
}

// LoadTicketKeys reads a session ticket key file: one key per line, each 64
// hex digits (32 bytes); blank lines and lines starting with # are
// ignored. The first key encrypts new tickets; the others still decrypt
// (for rotation: put a new key first, keep the old one below it for a
// while). Keep the file secret: whoever has it can decrypt resumed
// sessions' 0-RTT data.
func LoadTicketKeys(path string) ([][32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("quicbridge: reading ticket keys: %w", err)
	}
	var keys [][32]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		raw, err := hex.DecodeString(s)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("quicbridge: %s:%d: want 64 hex digits (a 32-byte key)", path, line)
		}
		keys = append(keys, [32]byte(raw))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("quicbridge: %s holds no ticket key", path)
	}
	return keys, nil
}

// CreateTicketKeyFile writes a new ticket key file holding one random key,
// readable only by its owner. It fails if the file exists.
func CreateTicketKeyFile(path string) error {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("quicbridge: generating a ticket key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("quicbridge: creating the ticket key file: %w", err)
	}
	_, err = fmt.Fprintf(f, "# gyre ingest TLS session ticket keys: first encrypts, all decrypt\n%x\n", key)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("quicbridge: writing the ticket key file: %w", err)
	}
	return nil
}

// Package ingest holds the parts of the gyre ingest node that do not depend
// on the network runtime: the ingest-v1 wire protocol (this file and
// decoder.go), and the sinks that accepted records are written to
// (sink.go, filesink.go, logformat.go).
//
// The protocol is specified in docs/protocol.md; the comments here say how
// the Go API maps onto it.
package ingest

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Wire constants of ingest-v1. Every integer on the wire is big-endian.
const (
	// HeaderSize is the size of the fixed frame header: len(4) ver(1)
	// kind(1) flags(2) seq(8).
	HeaderSize = 16

	// Version is the only protocol version this package speaks.
	Version = 1

	// lenFieldSize is the size of the leading len field, which counts the
	// bytes after itself, so len = HeaderSize - lenFieldSize + payload.
	lenFieldSize = 4

	// minLen is the smallest valid value of the len field: a frame with an
	// empty payload.
	minLen = HeaderSize - lenFieldSize

	// DefaultMaxPayload is the largest DATA payload a Decoder accepts when
	// it is not told otherwise (1 MiB).
	DefaultMaxPayload = 1 << 20

	// MaxFramePayload is the largest payload the len field can describe.
	// Encoders refuse larger payloads instead of writing a wrapped length.
	MaxFramePayload = 1<<32 - 1 - minLen

	// MaxPingPayload is the largest PING (and so PONG) payload. It is fixed
	// by the protocol, not configurable, so that a PONG never needs more
	// than a small fixed buffer on the server.
	MaxPingPayload = 64

	// MaxNackReason is the largest NACK reason in bytes. AppendNack
	// truncates longer reasons at a UTF-8 boundary; a decoder refuses NACK
	// frames whose reason is longer.
	MaxNackReason = 256

	// nackCodeSize is the size of the code that starts a NACK payload.
	nackCodeSize = 2

	// SessionIDSize is the size of a session id: the start of a HELLO
	// payload and the whole WELCOME payload.
	SessionIDSize = 16

	// MaxClientName is the largest client name a HELLO may carry after
	// the session id, in bytes of UTF-8.
	MaxClientName = 64
)

// Kind is the type of a frame, carried in byte 5 of the header.
type Kind uint8

// The frame kinds of ingest-v1. Clients send HELLO, DATA and PING; servers
// send WELCOME, ACK, NACK, PONG and GOAWAY.
const (
	KindData   Kind = 1
	KindAck    Kind = 2
	KindNack   Kind = 3
	KindPing   Kind = 4
	KindPong   Kind = 5
	KindGoaway Kind = 6
	// KindHello opens or resumes a producer session; only as the first
	// frame of a connection (see docs/protocol.md, "Sessions").
	KindHello Kind = 7
	// KindWelcome answers HELLO with the session id and the highest seq
	// of the session the sink has accepted.
	KindWelcome Kind = 8
)

// String returns the upper-case protocol name of k ("DATA", "ACK", ...), or
// "Kind(n)" for a value the protocol does not define.
func (k Kind) String() string {
	switch k {
	case KindData:
		return "DATA"
	case KindAck:
		return "ACK"
	case KindNack:
		return "NACK"
	case KindPing:
		return "PING"
	case KindPong:
		return "PONG"
	case KindGoaway:
		return "GOAWAY"
	case KindHello:
		return "HELLO"
	case KindWelcome:
		return "WELCOME"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// fromClient reports whether k is a kind that only clients send.
func (k Kind) fromClient() bool { return k == KindData || k == KindPing || k == KindHello }

// fromServer reports whether k is a kind that only servers send.
func (k Kind) fromServer() bool {
	return k == KindAck || k == KindNack || k == KindPong || k == KindGoaway || k == KindWelcome
}

// NackCode says why the server refused a frame. It is the first two bytes
// of a NACK payload.
type NackCode uint16

// The NACK codes of ingest-v1. After NackMalformed, NackTooLarge and
// NackUnknownSession the server closes the connection (Fatal reports
// true); after NackOverloaded, NackShuttingDown and NackStorageUnavailable
// a connection without a session stays usable and the client may send the
// payload again under a new seq (for NackStorageUnavailable, preferably to
// another node). A connection with a session is ended by the server after
// any of them (GOAWAY), and the client resends on a new one; see
// docs/protocol.md, "Sessions".
const (
	NackMalformed    NackCode = 1
	NackTooLarge     NackCode = 2
	NackOverloaded   NackCode = 3
	NackShuttingDown NackCode = 4
	// NackUnknownSession: a HELLO named a session the server does not
	// know (never opened, or expired); the connection closes.
	NackUnknownSession NackCode = 5
	// NackStorageUnavailable: the sink could not store the record (disk
	// full, out of descriptors, I/O error); nothing of it was kept.
	NackStorageUnavailable NackCode = 6
)

// String returns a short lower-case description of c, or "NackCode(n)" for
// a value the protocol does not define.
func (c NackCode) String() string {
	switch c {
	case NackMalformed:
		return "malformed"
	case NackTooLarge:
		return "too large"
	case NackOverloaded:
		return "overloaded"
	case NackShuttingDown:
		return "shutting down"
	case NackStorageUnavailable:
		return "storage unavailable"
	case NackUnknownSession:
		return "unknown session"
	}
	return "NackCode(" + strconv.Itoa(int(c)) + ")"
}

// Fatal reports whether the server closes the connection after sending a
// NACK with code c. Codes the protocol does not define count as fatal, so
// a client that meets one stops using the connection.
func (c NackCode) Fatal() bool {
	return c != NackOverloaded && c != NackShuttingDown && c != NackStorageUnavailable
}

// valid reports whether c is one of the codes ingest-v1 defines.
func (c NackCode) valid() bool {
	return c >= NackMalformed && c <= NackStorageUnavailable
}

// Header is the decoded fixed part of a frame. PayloadLen is the length of
// the payload that follows the header, that is the len field minus 12.
type Header struct {
	Kind       Kind
	Flags      uint16
	Seq        uint64
	PayloadLen uint32
}

// FrameLen returns the total size of the frame h describes, header
// included.
func (h Header) FrameLen() int { return HeaderSize + int(h.PayloadLen) }

// Frame is one decoded frame. Payload is a view into the bytes that were
// given to Decoder.Decode: it is valid for as long as the caller keeps those
// bytes unchanged, and its capacity ends at the end of the frame, so
// appending to it copies instead of overwriting the next frame.
type Frame struct {
	Header
	Payload []byte
}

// NackCode returns the code of a NACK frame, or 0 if f is not a NACK or is
// too short to hold one. Frames from a reply decoder are already checked.
func (f Frame) NackCode() NackCode {
	if f.Kind != KindNack || len(f.Payload) < nackCodeSize {
		return 0
	}
	return NackCode(binary.BigEndian.Uint16(f.Payload))
}

// NackReason returns the UTF-8 reason of a NACK frame (a view into the
// payload, not a copy), or nil if f is not a NACK.
func (f Frame) NackReason() []byte {
	if f.Kind != KindNack || len(f.Payload) < nackCodeSize {
		return nil
	}
	return f.Payload[nackCodeSize:]
}

// AppendTo appends the wire encoding of f to dst. Unlike the Append*
// constructors it does not check f against the protocol rules: it writes
// back exactly what a Decoder accepted, which is what the fuzz test relies
// on. The len field is taken from len(f.Payload), not f.PayloadLen.
func (f Frame) AppendTo(dst []byte) []byte {
	dst = appendHeader(dst, f.Kind, f.Flags, f.Seq, len(f.Payload))
	return append(dst, f.Payload...)
}

// appendHeader appends a 16-byte header. The caller has checked that
// payloadLen fits the len field.
func appendHeader(dst []byte, k Kind, flags uint16, seq uint64, payloadLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(minLen+payloadLen))
	dst = append(dst, Version, byte(k))
	dst = binary.BigEndian.AppendUint16(dst, flags)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// AppendData appends a DATA frame carrying payload to dst and returns the
// extended slice. It allocates only if dst lacks capacity. It fails, leaving
// dst as it was, only if payload is longer than MaxFramePayload; a payload
// over the server's configured maximum is the server's to refuse.
func AppendData(dst []byte, seq uint64, payload []byte) ([]byte, error) {
	if uint64(len(payload)) > MaxFramePayload {
		return dst, fmt.Errorf("ingest: DATA payload of %d bytes exceeds the %d the len field can carry: %w",
			len(payload), uint64(MaxFramePayload), ErrTooLarge)
	}
	dst = appendHeader(dst, KindData, 0, seq, len(payload))
	return append(dst, payload...), nil
}

// AppendPing appends a PING frame to dst. The payload is echoed in the PONG;
// it fails, leaving dst as it was, if payload is longer than MaxPingPayload.
func AppendPing(dst []byte, seq uint64, payload []byte) ([]byte, error) {
	return appendEcho(dst, KindPing, seq, payload)
}

// AppendPong appends a PONG frame answering the PING with the given seq and
// payload. It fails, leaving dst as it was, if payload is longer than
// MaxPingPayload, which a decoded PING never is.
func AppendPong(dst []byte, seq uint64, payload []byte) ([]byte, error) {
	return appendEcho(dst, KindPong, seq, payload)
}

func appendEcho(dst []byte, k Kind, seq uint64, payload []byte) ([]byte, error) {
	if len(payload) > MaxPingPayload {
		return dst, fmt.Errorf("ingest: %v payload of %d bytes exceeds %d: %w",
			k, len(payload), MaxPingPayload, ErrTooLarge)
	}
	dst = appendHeader(dst, k, 0, seq, len(payload))
	return append(dst, payload...), nil
}

// AppendAck appends an ACK frame to dst: every DATA frame with a seq up to
// and including seq that was not NACKed has been accepted by the sink.
func AppendAck(dst []byte, seq uint64) []byte {
	return appendHeader(dst, KindAck, 0, seq, 0)
}

// AppendGoaway appends a GOAWAY frame to dst; seq is the highest seq the
// server accepted on this connection (0 if none).
func AppendGoaway(dst []byte, seq uint64) []byte {
	return appendHeader(dst, KindGoaway, 0, seq, 0)
}

// AppendHello appends a HELLO frame: resume the session id, or open a new
// one if id is zero, with an optional client name for the server's logs.
// It fails, leaving dst as it was, if name is longer than MaxClientName
// bytes or not valid UTF-8.
func AppendHello(dst []byte, id SessionID, name string) ([]byte, error) {
	if len(name) > MaxClientName || !utf8.ValidString(name) {
		return dst, fmt.Errorf("ingest: client name %q: want at most %d bytes of UTF-8: %w", name, MaxClientName, ErrMalformed)
	}
	dst = appendHeader(dst, KindHello, 0, 0, SessionIDSize+len(name))
	dst = append(dst, id[:]...)
	return append(dst, name...), nil
}

// AppendWelcome appends a WELCOME frame: the session id, and seq, the
// highest seq of the session the sink has accepted (0 for a new session).
func AppendWelcome(dst []byte, seq uint64, id SessionID) []byte {
	dst = appendHeader(dst, KindWelcome, 0, seq, SessionIDSize)
	return append(dst, id[:]...)
}

// Hello returns the session id and client name of a HELLO frame, as views
// (the name into the payload). Frames from a Decoder are already checked;
// for anything else it returns a zero id and an empty name.
func (f Frame) Hello() (SessionID, []byte) {
	var id SessionID
	if f.Kind != KindHello || len(f.Payload) < SessionIDSize {
		return id, nil
	}
	copy(id[:], f.Payload)
	return id, f.Payload[SessionIDSize:]
}

// Welcome returns the session id of a WELCOME frame (zero for any other
// frame); its seq is f.Seq.
func (f Frame) Welcome() SessionID {
	var id SessionID
	if f.Kind == KindWelcome && len(f.Payload) == SessionIDSize {
		copy(id[:], f.Payload)
	}
	return id
}

// AppendNack appends a NACK frame refusing the frame with the given seq.
// A reason longer than MaxNackReason bytes is cut at the last UTF-8 rune
// boundary that fits, so a log line can never make a frame a peer refuses.
// The reason is not otherwise checked: pass valid UTF-8.
func AppendNack(dst []byte, seq uint64, code NackCode, reason string) []byte {
	if len(reason) > MaxNackReason {
		cut := MaxNackReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = appendHeader(dst, KindNack, 0, seq, nackCodeSize+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

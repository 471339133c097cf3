package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Sentinel errors. A *ProtocolError matches the one for its code with
// errors.Is, so a caller can branch without a type assertion and still
// read Code, Seq and Reason when it needs them for the NACK.
var (
	// ErrNeedMore is returned by Decoder.Decode when the bytes given hold
	// only the start of a frame. It is not a protocol error: read more and
	// call again with the same bytes plus what arrived.
	ErrNeedMore = errors.New("ingest: incomplete frame")

	// ErrMalformed matches protocol errors with code NackMalformed.
	ErrMalformed = errors.New("ingest: malformed frame")
	// ErrTooLarge matches protocol errors with code NackTooLarge, and the
	// encoder errors for payloads that cannot be framed.
	ErrTooLarge = errors.New("ingest: frame too large")
	// ErrOverloaded matches protocol errors with code NackOverloaded.
	ErrOverloaded = errors.New("ingest: server overloaded")
	// ErrShuttingDown matches protocol errors with code NackShuttingDown.
	ErrShuttingDown = errors.New("ingest: server shutting down")
	// ErrUnknownSession matches protocol errors with code
	// NackUnknownSession: a HELLO named a session the server does not
	// know (never opened here, or expired).
	ErrUnknownSession = errors.New("ingest: unknown session")
)

// sentinel returns the sentinel error matching code c, or nil.
func (c NackCode) sentinel() error {
	switch c {
	case NackMalformed:
		return ErrMalformed
	case NackTooLarge:
		return ErrTooLarge
	case NackOverloaded:
		return ErrOverloaded
	case NackShuttingDown:
		return ErrShuttingDown
	case NackUnknownSession:
		return ErrUnknownSession
	}
	return nil
}

// ProtocolError is a frame refused under the rules of ingest-v1. The
// server answers it with AppendNack(dst, e.Seq, e.Code, e.Reason) and then,
// if e.Code.Fatal(), closes the connection. A client can also build one from
// a NACK it received, to hand the refusal to its caller as an error.
type ProtocolError struct {
	Code NackCode
	// Seq is the seq of the refused frame, or 0 when the frame was too
	// short for its seq to be read (a len field below 12).
	Seq    uint64
	Reason string
}

func (e *ProtocolError) Error() string {
	return "ingest: frame seq " + strconv.FormatUint(e.Seq, 10) + " refused (" + e.Code.String() + "): " + e.Reason
}

// Is makes errors.Is(err, ErrMalformed) and its siblings true for a
// *ProtocolError with the matching code.
func (e *ProtocolError) Is(target error) bool {
	s := e.Code.sentinel()
	return s != nil && target == s
}

// Decoder splits a byte stream into frames and checks them against the
// rules of ingest-v1. It keeps the state one connection (or one QUIC
// stream) needs: the last seq seen and the payload limit.
//
// A Decoder is not safe for concurrent use: it belongs to the goroutine or
// loop that reads its connection. It never copies or retains the bytes it
// is given.
//
// The zero Decoder reads client frames with DefaultMaxPayload, as
// NewDecoder(0) does.
type Decoder struct {
	// maxPayload is the DATA payload limit; 0 means DefaultMaxPayload.
	maxPayload uint64
	// replies is set for a decoder of server frames (NewReplyDecoder).
	replies bool
	// started: a client frame was accepted, so HELLO may no longer come.
	started bool
	// lastSeq is the seq of the last client frame accepted. Client seqs
	// start above 0, so 0 also means "none yet".
	lastSeq uint64
	// err is the first protocol error. Once set, every call returns it:
	// after a protocol error the byte stream cannot be resynchronised, and
	// both codes that the decoder produces end the connection.
	err *ProtocolError
}

// NewDecoder returns a Decoder for the frames a client sends (HELLO, DATA
// and PING), as a server reads them. DATA payloads longer than maxPayload
// are refused with NackTooLarge; maxPayload <= 0 means DefaultMaxPayload.
//
// It enforces that seq strictly increases across all frames of the
// connection, DATA and PING alike, starting above 0, and that a HELLO
// (seq 0) comes only as the first frame.
func NewDecoder(maxPayload int) Decoder {
	d := Decoder{}
	if maxPayload > 0 {
		d.maxPayload = min(uint64(maxPayload), MaxFramePayload, math.MaxInt-HeaderSize)
	}
	return d
}

// NewReplyDecoder returns a Decoder for the frames a server sends (ACK,
// NACK, PONG and GOAWAY), as a client reads them. It checks the layout of
// each kind (empty ACK and GOAWAY payloads, a known NACK code and a reason
// of at most MaxNackReason bytes, a PONG payload of at most MaxPingPayload
// bytes) but no seq order: the client matches seqs against what it sent.
func NewReplyDecoder() Decoder {
	return Decoder{replies: true}
}

// LastSeq returns the seq of the last client frame this decoder accepted,
// or 0 if none. It is always 0 for a reply decoder.
func (d *Decoder) LastSeq() uint64 { return d.lastSeq }

// Decode decodes the first frame at the start of b. b holds whatever
// contiguous received bytes the caller has; frames may be split anywhere
// and several may be present. Decode does not copy: the returned frame's
// payload is a view into b. It allocates nothing unless it returns a
// protocol error.
//
// There are three outcomes:
//
//   - err == nil: f is the next frame and n the number of bytes of b it
//     took. The caller drops b[:n] and calls again with the rest.
//   - err == ErrNeedMore: b holds only part of a frame, and n is the
//     smallest len(b) at which a call can make progress (always more than
//     len(b)). Nothing was consumed; call again with b plus more bytes.
//     Oversize frames are refused once the 16-byte header is in, so n never
//     asks for more than the allowed payload.
//   - err is a *ProtocolError: the stream broke a rule. The error carries
//     the NACK code, the refused seq and a reason; it matches ErrMalformed
//     or ErrTooLarge with errors.Is. n is 0 and every later call returns the
//     same error, since the stream cannot be trusted past that point.
func (d *Decoder) Decode(b []byte) (f Frame, n int, err error) {
	if d.err != nil {
		return Frame{}, 0, d.err
	}
	if len(b) < lenFieldSize {
		return Frame{}, HeaderSize, ErrNeedMore
	}
	length := binary.BigEndian.Uint32(b)
	if length < minLen {
		// The frame claims to end inside its own header, so the bytes
		// where its seq would be belong to whatever follows: report seq 0.
		return Frame{}, 0, d.fail(NackMalformed, 0, "len "+strconv.FormatUint(uint64(length), 10)+" is below the 12-byte minimum")
	}
	if len(b) < HeaderSize {
		return Frame{}, HeaderSize, ErrNeedMore
	}
	h := Header{
		Kind:       Kind(b[5]),
		Flags:      binary.BigEndian.Uint16(b[6:8]),
		Seq:        binary.BigEndian.Uint64(b[8:16]),
		PayloadLen: length - minLen,
	}
	if err := d.checkHeader(b[4], h); err != nil {
		return Frame{}, 0, err
	}
	total := h.FrameLen() // fits an int: checkHeader bounded PayloadLen
	if len(b) < total {
		return Frame{}, total, ErrNeedMore
	}
	payload := b[HeaderSize:total:total]
	if h.Kind == KindNack {
		if c := NackCode(binary.BigEndian.Uint16(payload)); !c.valid() {
			return Frame{}, 0, d.fail(NackMalformed, h.Seq, "unknown NACK code "+strconv.Itoa(int(c)))
		}
	}
	if h.Kind == KindHello {
		if name := payload[SessionIDSize:]; !utf8.Valid(name) {
			return Frame{}, 0, d.fail(NackMalformed, h.Seq, "HELLO client name is not valid UTF-8")
		}
	}
	if !d.replies {
		d.lastSeq = h.Seq
		d.started = true
	}
	return Frame{Header: h, Payload: payload}, total, nil
}

// checkHeader applies every rule that the 16-byte header alone decides, so
// that a frame can be refused before its payload is read.
func (d *Decoder) checkHeader(ver byte, h Header) error {
	if ver != Version {
		return d.fail(NackMalformed, h.Seq, "version "+strconv.Itoa(int(ver))+", want 1")
	}
	if d.replies && !h.Kind.fromServer() || !d.replies && !h.Kind.fromClient() {
		return d.fail(NackMalformed, h.Seq, "unexpected frame kind "+h.Kind.String())
	}
	if h.Flags != 0 {
		return d.fail(NackMalformed, h.Seq, "flags "+strconv.Itoa(int(h.Flags))+" must be 0 in version 1")
	}
	plen := uint64(h.PayloadLen)
	switch h.Kind {
	case KindData:
		limit := d.maxPayload
		if limit == 0 {
			limit = DefaultMaxPayload
		}
		if plen > limit {
			return d.fail(NackTooLarge, h.Seq, fmt.Sprintf("DATA payload of %d bytes exceeds the maximum of %d", plen, limit))
		}
	case KindPing, KindPong:
		if plen > MaxPingPayload {
			return d.fail(NackTooLarge, h.Seq, fmt.Sprintf("%v payload of %d bytes exceeds the maximum of %d", h.Kind, plen, MaxPingPayload))
		}
	case KindHello:
		if d.started {
			return d.fail(NackMalformed, h.Seq, "HELLO must be the first frame of a connection, and comes once")
		}
		if h.Seq != 0 {
			return d.fail(NackMalformed, h.Seq, fmt.Sprintf("HELLO seq must be 0, is %d", h.Seq))
		}
		if plen < SessionIDSize || plen > SessionIDSize+MaxClientName {
			return d.fail(NackMalformed, h.Seq, fmt.Sprintf("HELLO payload of %d bytes: want a %d-byte session id and at most %d bytes of name", plen, SessionIDSize, MaxClientName))
		}
		return nil // seq 0: the only client frame exempt from the seq rule
	case KindWelcome:
		if plen != SessionIDSize {
			return d.fail(NackMalformed, h.Seq, fmt.Sprintf("WELCOME payload must be the %d-byte session id, has %d bytes", SessionIDSize, plen))
		}
	case KindAck, KindGoaway:
		if plen != 0 {
			return d.fail(NackMalformed, h.Seq, fmt.Sprintf("%v payload must be empty, has %d bytes", h.Kind, plen))
		}
	case KindNack:
		if plen < nackCodeSize {
			return d.fail(NackMalformed, h.Seq, "NACK payload too short for its code")
		}
		if plen > nackCodeSize+MaxNackReason {
			return d.fail(NackTooLarge, h.Seq, fmt.Sprintf("NACK reason of %d bytes exceeds the maximum of %d", plen-nackCodeSize, MaxNackReason))
		}
	}
	if !d.replies && h.Seq <= d.lastSeq {
		return d.fail(NackMalformed, h.Seq, fmt.Sprintf("seq %d does not increase on %d", h.Seq, d.lastSeq))
	}
	return nil
}

// fail records and returns the decoder's first protocol error.
func (d *Decoder) fail(code NackCode, seq uint64, reason string) *ProtocolError {
	d.err = &ProtocolError{Code: code, Seq: seq, Reason: reason}
	return d.err
}

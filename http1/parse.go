package http1

import "bytes"

// Request heads are parsed in two passes over the bytes the reactor
// presents (RFC 9112 sections 2 to 7; net/http's readRequest,
// textproto.Reader and transfer.go where the RFC leaves a choice):
//
//  1. scanHead looks for the end of the head only, resuming where the
//     previous call stopped, so a head arriving a byte at a time costs
//     linear work; it applies the request-line and head size limits
//     while the head is incomplete.
//  2. parse runs once over a complete head: it validates every byte,
//     records each field as a pair of slices into the head (in a
//     per-reactor array: the head is only valid during the handler
//     call), and derives the message framing.
//
// What is refused, and how (status; the connection is closed after each):
//
//   - a request line that is not exactly method SP target SP version, a
//     method that is not a token, a target with a control byte or space,
//     a version that is not HTTP/d.d: 400; a major version other than 1:
//     505; a request line over MaxRequestLine: 414;
//   - a field line that starts with whitespace (obs-fold, or a space
//     before the first field), without a colon, with an empty name or a
//     name that is not a token (which covers whitespace before the
//     colon), or a value with a control byte other than HTAB (which
//     covers a bare CR): 400; a head over MaxHeaderBytes or with more
//     than MaxHeaders fields: 431;
//   - Content-Length that is not a non-empty run of decimal digits (no
//     sign, no list), or several differing ones: 400;
//   - Transfer-Encoding other than a single field reading "chunked":
//     501; Transfer-Encoding in an HTTP/1.0 request: 400 (RFC 9112
//     section 6.1: the framing is faulty); Transfer-Encoding together
//     with Content-Length: 400 (RFC 9112 section 6.3, item 3: "ought to
//     be handled as an error", and the connection closed);
//   - HTTP/1.1 without Host, several Host fields, a Host with a byte no
//     host can contain: 400;
//   - Expect other than 100-continue: 417.
//
// A line may end with LF alone (RFC 9112 section 2.2 allows it, as
// net/http does); a CR anywhere else is refused. Empty lines before a
// request line are skipped (section 2.2: "SHOULD ignore at least one").

// field is one header field of the request being served: slices of its
// head.
type field struct{ name, value []byte }

// Results of scanHead and parse besides a status code.
const (
	needMore = -1 // the head is not complete yet
	parsedOK = 0
)

// headScan is where scanHead stopped in an incomplete head.
type headScan struct {
	from     int  // search for the next LF from here
	lineDone bool // the request line's LF was seen
}

// scanHead looks for the end of the head at the start of b. It returns
// the length of the head through its empty line with parsedOK, or
// needMore, or an error status: 414 for a request line over maxLine, 431
// for a head over maxHead.
func scanHead(b []byte, st *headScan, maxLine, maxHead int) (end, status int) {
	i := st.from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			st.from = len(b)
			return 0, tooBig(len(b), st.lineDone, maxLine, maxHead)
		}
		i += j
		if !st.lineDone {
			st.lineDone = true
			if trimCR(b[:i]) > maxLine {
				return 0, 414
			}
		}
		// i is at an LF: the head ends if the next line is empty.
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return checkHeadSize(i+2, maxHead)
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return checkHeadSize(i+3, maxHead)
		case i+1 >= len(b) || (b[i+1] == '\r' && i+2 >= len(b)):
			st.from = i // look at this LF again when more bytes come
			return 0, tooBig(len(b), true, maxLine, maxHead)
		}
		i++
	}
}

// trimCR returns the length of line without a final CR.
func trimCR(line []byte) int {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return n - 1
	}
	return len(line)
}

func checkHeadSize(n, maxHead int) (int, int) {
	if n > maxHead+2 { // the final empty line is not counted
		return 0, 431
	}
	return n, parsedOK
}

// tooBig judges an incomplete head of n bytes.
func tooBig(n int, lineDone bool, maxLine, maxHead int) int {
	switch {
	case !lineDone && n > maxLine+2:
		return 414
	case n > maxHead+2:
		return 431
	}
	return needMore
}

// parse validates the complete head h (as delimited by scanHead) and
// fills r's view of it, with its fields in fields[:n]. It returns
// parsedOK or an error status.
func (r *Request) parse(h []byte, l *limits, fields []field) int {
	// Request line.
	i := bytes.IndexByte(h, '\n')
	line := h[:trimCR(h[:i])]
	if len(line) > l.maxLine {
		return 414
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return 400
	}
	method := line[:sp]
	for _, c := range method {
		if !isToken[c] {
			return 400
		}
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return 400
	}
	target := rest[:sp]
	for _, c := range target {
		if !isTargetByte[c] {
			return 400
		}
	}
	ver := rest[sp+1:]
	if len(ver) != 8 || string(ver[:5]) != "HTTP/" || ver[6] != '.' || !isDigit(ver[5]) || !isDigit(ver[7]) {
		return 400
	}
	if ver[5] != '1' {
		return 505
	}
	r.minor = ver[7] - '0'
	r.methodB, r.target = method, target
	r.method = internMethod(method)
	r.splitTarget()
	// Percent-encoding in the path must be well formed (net/http's
	// url.ParseRequestURI refuses it otherwise; the query is not checked,
	// there either).
	for p, k := r.path, 0; k < len(p); k++ {
		if p[k] == '%' {
			if k+2 >= len(p) || !isHex(p[k+1]) || !isHex(p[k+2]) {
				return 400
			}
			k += 2
		}
	}

	// Header fields.
	var (
		nf         int
		clSeen     bool
		clRaw      []byte
		teCount    int
		teChunked  bool
		hostCount  int
		connClose  bool
		connKeep   bool
		expectCont bool
		expectBad  bool
	)
	r.contentLength = -1
	r.host = nil
	pos := i + 1
	for {
		j := bytes.IndexByte(h[pos:], '\n')
		if j < 0 {
			return 400 // cannot happen: scanHead found the empty line
		}
		line := h[pos : pos+trimCR(h[pos:pos+j])]
		pos += j + 1
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 400 // obs-fold, or whitespace before the first field
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 400
		}
		name := line[:colon]
		for _, c := range name {
			if !isToken[c] {
				return 400 // includes whitespace before the colon
			}
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if !isValueByte[c] {
				return 400 // a control byte: a bare CR, NUL...
			}
		}
		if nf == len(fields) {
			return 431
		}
		fields[nf] = field{name, value}
		nf++
		switch len(name) {
		case 4:
			if equalFold(name, "host") {
				hostCount++
				for _, c := range value {
					if !isHostByte[c] {
						return 400
					}
				}
				r.host = value
			}
		case 6:
			if equalFold(name, "expect") && len(value) > 0 {
				if equalFold(value, "100-continue") {
					expectCont = true
				} else {
					expectBad = true
				}
			}
		case 10:
			if equalFold(name, "connection") {
				c, k := connectionTokens(value)
				connClose = connClose || c
				connKeep = connKeep || k
			}
		case 14:
			if equalFold(name, "content-length") {
				if clSeen {
					// Repeats are accepted only when identical
					// (RFC 9112 section 6.3, item 5; net/http too).
					if !bytes.Equal(clRaw, value) {
						return 400
					}
					continue
				}
				n, ok := parseContentLength(value)
				if !ok {
					return 400
				}
				clSeen, clRaw, r.contentLength = true, value, n
			}
		case 17:
			if equalFold(name, "transfer-encoding") {
				teCount++
				teChunked = equalFold(value, "chunked")
			}
		}
	}
	r.fields = fields[:nf]

	// Framing (RFC 9112 section 6.3).
	r.chunked = false
	if teCount > 0 {
		if r.minor == 0 {
			return 400 // section 6.1: an HTTP/1.0 message with Transfer-Encoding is faulty
		}
		if teCount > 1 || !teChunked {
			return 501
		}
		if clSeen {
			return 400 // section 6.3, item 3; net/http serves it and keeps the connection
		}
		r.chunked = true
	}
	if r.minor >= 1 && hostCount == 0 && r.method != "CONNECT" {
		return 400
	}
	if hostCount > 1 {
		return 400
	}
	if expectBad {
		return 417
	}
	r.expectContinue = expectCont && r.minor >= 1 && (r.chunked || r.contentLength > 0)
	if r.minor == 0 {
		r.keepAlive = connKeep && !connClose
	} else {
		r.keepAlive = !connClose
	}
	return parsedOK
}

// splitTarget finds the path and query of the target: origin-form
// ("/p?q"), absolute-form ("http://host/p?q"), asterisk-form ("*") or
// authority-form (CONNECT's "host:port", which has neither).
func (r *Request) splitTarget() {
	t := r.target
	r.path, r.query = nil, nil
	switch {
	case len(t) > 0 && t[0] == '/':
	case len(t) == 1 && t[0] == '*':
		r.path = t
		return
	default:
		k := bytes.Index(t, schemeSep)
		if k < 0 {
			return // authority-form
		}
		t = t[k+len(schemeSep):]
		slash := bytes.IndexByte(t, '/')
		if slash < 0 {
			q := bytes.IndexByte(t, '?')
			if q >= 0 {
				r.query = t[q+1:]
			}
			r.path = rootPath
			return
		}
		t = t[slash:]
	}
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		r.path, r.query = t[:q], t[q+1:]
		return
	}
	r.path = t
}

var (
	schemeSep = []byte("://")
	rootPath  = []byte("/")
)

// connectionTokens reports whether a Connection field value lists
// "close" and "keep-alive".
func connectionTokens(v []byte) (closeTok, keepAlive bool) {
	for len(v) > 0 {
		var tok []byte
		if k := bytes.IndexByte(v, ','); k >= 0 {
			tok, v = v[:k], v[k+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		switch {
		case equalFold(tok, "close"):
			closeTok = true
		case equalFold(tok, "keep-alive"):
			keepAlive = true
		}
	}
	return closeTok, keepAlive
}

// parseContentLength parses 1*DIGIT into a non-negative int64.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false // 18 digits cannot overflow an int64
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals the lower-case ASCII string s,
// ignoring ASCII case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// methods are the method names returned without allocating.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI"}

func internMethod(b []byte) string {
	for _, m := range methods {
		if string(b) == m {
			return m
		}
	}
	return string(b)
}

// Chunked request bodies (RFC 9112 section 7.1), decoded as they arrive
// without copying: each call takes what b holds and reports the data
// pieces it found. The rules follow net/http's internal/chunked.go: the
// size is 1 to 16 hex digits, a chunk line ends with CRLF (a bare LF or a
// CR elsewhere is an error), at most 4 KiB per line, and at most 16 KiB
// of framing beyond 16 bytes plus twice the data per chunk (many tiny
// chunks with long extensions are a way to burn CPU). Unlike net/http,
// chunk extensions must follow the grammar (token [= token /
// quoted-string], separated by ";", with optional whitespace after the
// first ";"); net/http accepts any bytes after the first ";". Trailer fields are validated
// like header fields, bounded by MaxHeaderBytes and MaxHeaders, and kept
// for Request.Trailer.

const (
	chunkSize    = iota // expecting a chunk-size line
	chunkData           // inside chunk data
	chunkDataEnd        // expecting the CRLF after chunk data
	chunkTrailer        // expecting trailer lines or the final empty line
	chunkDone
)

const (
	maxChunkLine   = 4096
	maxChunkExcess = 16 << 10
)

// chunkDecoder decodes one chunked body.
type chunkDecoder struct {
	state    uint8
	left     uint64 // data bytes left in the current chunk
	excess   int64
	trailerN int // trailer bytes so far
	trailerF int // trailer fields so far
	// trailer holds the trailer fields received, "name:value\n" lines
	// (validated; allocated only for a body that has trailers).
	trailer []byte
}

// chunkResult is one step of the decoder: n bytes of b taken, of which
// data (a slice of b) is body data; done at the end of the body; err on
// malformed framing.
type chunkResult struct {
	n    int
	data []byte
	done bool
	err  error
}

// step decodes from b until it finds data, the end, an error, or needs
// more bytes (n may then be smaller than len(b): an incomplete line is
// left for the next call).
func (d *chunkDecoder) step(b []byte, l *limits) chunkResult {
	n := 0
	for {
		switch d.state {
		case chunkSize:
			k := bytes.IndexByte(b[n:], '\n')
			if k < 0 {
				if len(b)-n >= maxChunkLine {
					return chunkResult{n: n, err: errChunkLine}
				}
				return chunkResult{n: n}
			}
			line := b[n : n+k+1]
			if len(line) < 2 || line[len(line)-2] != '\r' {
				return chunkResult{n: n, err: errChunkLF}
			}
			line = line[:len(line)-2]
			if len(line) >= maxChunkLine {
				return chunkResult{n: n, err: errChunkLine}
			}
			size, ok := parseChunkSize(line)
			if !ok {
				return chunkResult{n: n, err: errChunkSize}
			}
			n += k + 1
			d.excess += int64(len(line)) + 2
			d.excess -= 16 + 2*int64(min(size, 1<<40))
			d.excess = max(d.excess, 0)
			if d.excess > maxChunkExcess {
				return chunkResult{n: n, err: errChunkExcess}
			}
			if size == 0 {
				d.state = chunkTrailer
				continue
			}
			d.left = size
			d.state = chunkData
		case chunkData:
			if n == len(b) {
				return chunkResult{n: n}
			}
			take := uint64(len(b) - n)
			if take > d.left {
				take = d.left
			}
			data := b[n : n+int(take)]
			n += int(take)
			d.left -= take
			if d.left == 0 {
				d.state = chunkDataEnd
			}
			return chunkResult{n: n, data: data}
		case chunkDataEnd:
			if len(b)-n < 2 {
				if len(b)-n == 1 && b[n] != '\r' {
					return chunkResult{n: n, err: errChunkEnd}
				}
				return chunkResult{n: n}
			}
			if b[n] != '\r' || b[n+1] != '\n' {
				return chunkResult{n: n, err: errChunkEnd}
			}
			n += 2
			d.state = chunkSize
		case chunkTrailer:
			k := bytes.IndexByte(b[n:], '\n')
			if k < 0 {
				if d.trailerN+len(b)-n > l.maxHead {
					return chunkResult{n: n, err: errTrailerSize}
				}
				return chunkResult{n: n}
			}
			line := b[n : n+trimCR(b[n:n+k])]
			d.trailerN += k + 1
			if d.trailerN > l.maxHead+2 {
				return chunkResult{n: n, err: errTrailerSize}
			}
			n += k + 1
			if len(line) == 0 {
				d.state = chunkDone
				return chunkResult{n: n, done: true}
			}
			if !validTrailerLine(line) {
				return chunkResult{n: n, err: errTrailer}
			}
			d.trailer = append(append(d.trailer, line...), '\n')
			d.trailerF++
			if d.trailerF > l.maxHeaders {
				return chunkResult{n: n, err: errTrailerSize}
			}
		default:
			return chunkResult{n: n, done: true}
		}
	}
}

// parseChunkSize parses chunk-size [ chunk-ext ] (the line without CRLF).
func parseChunkSize(line []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			goto ext
		}
		if i == 16 {
			return 0, false
		}
		n = n<<4 | uint64(v)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	if len(rest) > 0 && rest[0] != ';' {
		// Only trailing whitespace may follow the size directly: like
		// net/http, no whitespace before ";" (RFC 9112's "bad
		// whitespace", which senders must not generate).
		return n, len(trimOWS(rest)) == 0
	}
	return n, validChunkExt(rest)
}

// validChunkExt checks *( BWS ";" BWS name [ BWS "=" BWS value ] ) BWS,
// value being a token or a quoted-string.
func validChunkExt(b []byte) bool {
	for {
		b = trimLeftOWS(b)
		if len(b) == 0 {
			return true
		}
		if b[0] != ';' {
			return false
		}
		b = trimLeftOWS(b[1:])
		k := tokenLen(b)
		if k == 0 {
			return false
		}
		b = trimLeftOWS(b[k:])
		if len(b) == 0 || b[0] != '=' {
			continue
		}
		b = trimLeftOWS(b[1:])
		if len(b) > 0 && b[0] == '"' {
			k = quotedLen(b)
		} else {
			k = tokenLen(b)
		}
		if k == 0 {
			return false
		}
		b = b[k:]
	}
}

func trimLeftOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func tokenLen(b []byte) int {
	for i, c := range b {
		if !isToken[c] {
			return i
		}
	}
	return len(b)
}

// quotedLen returns the length of the quoted-string at the start of b, or 0.
func quotedLen(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 == len(b) || !isValueByte[b[i+1]] {
				return 0
			}
			i++
		case !isValueByte[c]:
			return 0
		}
	}
	return 0
}

// validTrailerLine checks a trailer field line like a header field line.
func validTrailerLine(line []byte) bool {
	if line[0] == ' ' || line[0] == '\t' {
		return false
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	for _, c := range line[:colon] {
		if !isToken[c] {
			return false
		}
	}
	for _, c := range line[colon+1:] {
		if !isValueByte[c] {
			return false
		}
	}
	return true
}

// Byte classes.
var (
	isToken      [256]bool // tchar (RFC 9110 section 5.6.2)
	isValueByte  [256]bool // field-vchar, SP and HTAB (obs-text included)
	isTargetByte [256]bool // visible ASCII and obs-text: no space, no control
	isHostByte   [256]bool // what net/http's ValidHostHeader allows
)

func init() {
	for c := 0; c < 256; c++ {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			isToken[c] = true
			isHostByte[c] = true
		}
		isValueByte[c] = c == '\t' || (c >= 0x20 && c != 0x7f)
		isTargetByte[c] = c > 0x20 && c != 0x7f
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		isToken[c] = true
	}
	for _, c := range []byte("!$%&()*+,-.:;=[']_~") {
		isHostByte[c] = true
	}
}

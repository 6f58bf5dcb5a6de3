package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"time"

	"github.com/sgload/sgload/internal/jsonarray"
)

// FormatVersion is written as "v" in every record; readers refuse others.
const FormatVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one accepted webhook POST, as it sits in a segment file.
//
// On disk a record is one line of JSON:
//
//	{"v":1,"seq":S,"n":N,"at":"…","node":"…","auth":"…","hdr":{…},"len":L,"crc":C,"cr":[…],"lf":[…],"body":<body without CR and LF>}
//
// The body is stored as received, minus its CR and LF bytes, whose offsets
// are kept in "cr" and "lf" (each offset relative to the previous one in the
// same list) so the exact bytes come back; "crc" is the CRC-32C of the exact
// bytes. In valid JSON, CR and LF can only be whitespace between tokens, so
// the stored body is still the same JSON and the line stays one line that jq
// and grep can read. See docs/ARCHITECTURE.md for why a record is a POST and
// not an event.
type Record struct {
	// Sequence is the _sequence of the first event; event i has Sequence+i.
	Sequence int64
	// Events is the number of events (array elements) in Body.
	Events int
	// ReceivedAt is when the POST was accepted, with microsecond precision.
	ReceivedAt time.Time
	// Node names the serve instance that accepted the POST.
	Node string
	// Auth lists the authentication methods the POST passed, e.g. "signature+oauth".
	Auth string
	// Header holds the request headers worth keeping: the signature pair (so
	// the POST can be verified again or forwarded verbatim), content type and
	// user agent. Never credentials.
	Header map[string]string
	// Body is the request body, byte for byte.
	Body []byte
}

// Split cuts Body into its events' exact bytes; ok is false when Body is
// not an array of exactly Events objects (a damaged record).
func (r *Record) Split() (events [][]byte, ok bool) {
	events = make([][]byte, 0, r.Events)
	ok = jsonarray.Objects(r.Body, func(o []byte) bool {
		events = append(events, o)
		return true
	})
	return events, ok && len(events) == r.Events
}

// LastSequence is the _sequence of the record's last event.
func (r *Record) LastSequence() int64 {
	if r.Events == 0 {
		return r.Sequence
	}
	return r.Sequence + int64(r.Events) - 1
}

// Prepared is the part of a record that does not depend on when or where it
// is written: everything after the sequence, time and node. Preparing runs in
// the request's goroutine so the single writer only stitches bytes together.
type Prepared struct {
	Events int
	auth   []byte // JSON string
	head   []byte // `"hdr":…,"body":`
	body   []byte // the body without CR and LF; aliases the caller's buffer
}

// Size is the number of bytes the record will take, give or take the prefix.
func (p *Prepared) Size() int { return len(p.head) + len(p.body) + 96 }

// Prepare encodes the fixed part of a record for body, which holds events
// array elements. It does not validate the body; the webhook does.
//
// Prepare takes body over: it removes the CR and LF bytes in place (their
// offsets go into the record), and the caller must leave body alone until
// Append returns. Working in place keeps the ingest path free of a second
// copy of every body.
func Prepare(events int, auth string, header map[string]string, body []byte) (*Prepared, error) {
	hdr := []byte("{}")
	if header != nil {
		var err error
		if hdr, err = json.Marshal(header); err != nil {
			return nil, fmt.Errorf("encode headers: %w", err)
		}
	}
	quotedAuth, err := json.Marshal(auth)
	if err != nil {
		return nil, fmt.Errorf("encode auth: %w", err)
	}
	cr := offsets(body, '\r')
	lf := offsets(body, '\n')
	head := make([]byte, 0, len(hdr)+64+5*(len(cr)+len(lf)))
	head = append(head, `"hdr":`...)
	head = append(head, hdr...)
	head = append(head, `,"len":`...)
	head = strconv.AppendInt(head, int64(len(body)), 10)
	head = append(head, `,"crc":`...)
	head = strconv.AppendUint(head, uint64(crc32.Checksum(body, castagnoli)), 10)
	head = append(head, `,"cr":`...)
	head = appendDeltas(head, cr)
	head = append(head, `,"lf":`...)
	head = appendDeltas(head, lf)
	head = append(head, bodyKey...)
	// Close the gaps left by the removed bytes, merging the two sorted lists.
	dst, src := 0, 0
	for len(cr) > 0 || len(lf) > 0 {
		var pos int
		if len(lf) == 0 || (len(cr) > 0 && cr[0] < lf[0]) {
			pos, cr = cr[0], cr[1:]
		} else {
			pos, lf = lf[0], lf[1:]
		}
		dst += copy(body[dst:], body[src:pos])
		src = pos + 1
	}
	dst += copy(body[dst:], body[src:])
	return &Prepared{Events: events, auth: quotedAuth, head: head, body: body[:dst]}, nil
}

const (
	bodyKey = `,"body":`
	crKey   = `,"cr":[`
	lfKey   = `,"lf":[`
)

// parseInts reads non-negative decimal integers separated by commas up to a
// closing bracket, and returns them and what follows the bracket.
func parseInts(b []byte) ([]int, []byte, error) {
	out := make([]int, 0, bytes.Count(b, []byte(","))+1)
	i := 0
	if i < len(b) && b[i] == ']' {
		return out, b[1:], nil
	}
	for i < len(b) {
		n, start := 0, i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 18 {
			n = n*10 + int(b[i]-'0')
			i++
		}
		if i == start || i >= len(b) {
			break
		}
		out = append(out, n)
		switch b[i] {
		case ',':
			i++
		case ']':
			return out, b[i+1:], nil
		default:
			return nil, nil, fmt.Errorf("%w: offset list", ErrCorrupt)
		}
	}
	return nil, nil, fmt.Errorf("%w: offset list", ErrCorrupt)
}

// offsets returns the positions of c in b; bytes.IndexByte is vectorised,
// so this costs little next to reading the body.
func offsets(b []byte, c byte) []int {
	var out []int
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], c)
		if i < 0 {
			return out
		}
		out = append(out, off+i)
		off += i + 1
	}
}

// appendDeltas appends a JSON array of offsets, each relative to the one
// before, which keeps the numbers short.
func appendDeltas(dst []byte, offs []int) []byte {
	dst = append(dst, '[')
	prev := 0
	for i, o := range offs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(o-prev), 10)
		prev = o
	}
	return append(dst, ']')
}

// appendRecord appends the complete line for p. quotedNode is the node name
// as a JSON string.
func appendRecord(dst []byte, seq int64, at time.Time, quotedNode []byte, p *Prepared) []byte {
	dst = append(dst, `{"v":1,"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"n":`...)
	dst = strconv.AppendInt(dst, int64(p.Events), 10)
	dst = append(dst, `,"at":"`...)
	dst = at.UTC().AppendFormat(dst, timeLayout)
	dst = append(dst, `","node":`...)
	dst = append(dst, quotedNode...)
	dst = append(dst, `,"auth":`...)
	dst = append(dst, p.auth...)
	dst = append(dst, ',')
	dst = append(dst, p.head...)
	dst = append(dst, p.body...)
	return append(dst, '}', '\n')
}

const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// EncodeRecord returns the line for r, newline included. r is not changed.
func EncodeRecord(r *Record) ([]byte, error) {
	p, err := Prepare(r.Events, r.Auth, r.Header, bytes.Clone(r.Body))
	if err != nil {
		return nil, err
	}
	node, err := json.Marshal(r.Node)
	if err != nil {
		return nil, err
	}
	return appendRecord(nil, r.Sequence, r.ReceivedAt, node, p), nil
}

// ErrCorrupt marks a line that is not a complete, intact record: a torn
// write at the end of a segment, or damage. Callers branch on it with
// errors.Is.
var ErrCorrupt = errors.New("corrupt record")

type header struct {
	V    int               `json:"v"`
	Seq  *int64            `json:"seq"`
	N    int               `json:"n"`
	At   string            `json:"at"`
	Node string            `json:"node"`
	Auth string            `json:"auth"`
	Hdr  map[string]string `json:"hdr"`
	Len  *int              `json:"len"`
	CRC  *uint32           `json:"crc"`
}

// ParseRecord decodes one line (with or without its trailing newline). The
// returned Body is a new slice; line is not retained.
func ParseRecord(line []byte) (*Record, error) { return parseRecord(line, nil) }

// parseRecord is ParseRecord with the body allocated by alloc, when set.
func parseRecord(line []byte, alloc func(int) []byte) (*Record, error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	i := bytes.Index(line, []byte(bodyKey))
	if i < 0 || len(line) < 2 || line[0] != '{' || line[len(line)-1] != '}' {
		return nil, fmt.Errorf("%w: no body", ErrCorrupt)
	}
	// The offset lists are parsed by hand: with thousands of numbers they
	// cost encoding/json more than the rest of the record.
	j := bytes.Index(line[:i], []byte(crKey))
	if j < 0 {
		return nil, fmt.Errorf("%w: no cr list", ErrCorrupt)
	}
	cr, rest, err := parseInts(line[j+len(crKey) : i])
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(rest, []byte(lfKey)) {
		return nil, fmt.Errorf("%w: no lf list", ErrCorrupt)
	}
	lf, rest, err := parseInts(rest[len(lfKey):])
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: lf list", ErrCorrupt)
	}
	hdrJSON := make([]byte, 0, j+1)
	hdrJSON = append(append(hdrJSON, line[:j]...), '}')
	var h header
	if err := json.Unmarshal(hdrJSON, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	if h.V != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, h.V, FormatVersion)
	}
	if h.Seq == nil || h.Len == nil || h.CRC == nil || h.N < 0 {
		return nil, fmt.Errorf("%w: header lacks seq, len or crc", ErrCorrupt)
	}
	at, err := time.Parse(time.RFC3339Nano, h.At)
	if err != nil {
		return nil, fmt.Errorf("%w: at: %v", ErrCorrupt, err)
	}
	stored := line[i+len(bodyKey) : len(line)-1]
	if *h.Len < 0 || len(stored)+len(cr)+len(lf) != *h.Len {
		return nil, fmt.Errorf("%w: body is %d bytes + %d CR + %d LF, header says %d",
			ErrCorrupt, len(stored), len(cr), len(lf), *h.Len)
	}
	body, err := restore(stored, cr, lf, *h.Len, alloc)
	if err != nil {
		return nil, err
	}
	if crc32.Checksum(body, castagnoli) != *h.CRC {
		return nil, fmt.Errorf("%w: crc mismatch", ErrCorrupt)
	}
	return &Record{
		Sequence:   *h.Seq,
		Events:     h.N,
		ReceivedAt: at,
		Node:       h.Node,
		Auth:       h.Auth,
		Header:     h.Hdr,
		Body:       body,
	}, nil
}

// restore puts the CR and LF bytes back at their offsets.
func restore(stored []byte, cr, lf []int, n int, alloc func(int) []byte) ([]byte, error) {
	crAbs, err := absolute(cr, n)
	if err != nil {
		return nil, fmt.Errorf("%w: cr: %v", ErrCorrupt, err)
	}
	lfAbs, err := absolute(lf, n)
	if err != nil {
		return nil, fmt.Errorf("%w: lf: %v", ErrCorrupt, err)
	}
	var body []byte
	if alloc != nil {
		body = alloc(n)[:n]
	} else {
		body = make([]byte, n)
	}
	src, pos := 0, 0
	for len(crAbs) > 0 || len(lfAbs) > 0 {
		var at int
		var c byte
		if len(lfAbs) == 0 || (len(crAbs) > 0 && crAbs[0] < lfAbs[0]) {
			at, c, crAbs = crAbs[0], '\r', crAbs[1:]
		} else {
			at, c, lfAbs = lfAbs[0], '\n', lfAbs[1:]
		}
		if at < pos {
			return nil, fmt.Errorf("%w: CR and LF share offset %d", ErrCorrupt, at)
		}
		src += copy(body[pos:at], stored[src:])
		body[at] = c
		pos = at + 1
	}
	if len(stored)-src != n-pos {
		return nil, fmt.Errorf("%w: body length does not match offsets", ErrCorrupt)
	}
	copy(body[pos:], stored[src:])
	return body, nil
}

// absolute turns delta-encoded offsets into strictly increasing positions
// below n.
func absolute(deltas []int, n int) ([]int, error) {
	out := make([]int, len(deltas))
	prev := -1
	for i, d := range deltas {
		pos := d
		if i > 0 {
			pos = prev + d
		}
		if pos <= prev || pos >= n || (i > 0 && d <= 0) {
			return nil, fmt.Errorf("offset %d out of order or range", pos)
		}
		out[i], prev = pos, pos
	}
	return out, nil
}

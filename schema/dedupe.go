package schema

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
	"github.com/zeebo/xxh3"

	"github.com/sgload/sgload/internal/jsonarray"
)

// The dedupe rule, defined here once and used by flush (package loader, with
// its history in package dedupe), by the views of every dialect (DedupeSQL)
// and by forward's messageId:
//
//   - an event with an sg_event_id is a duplicate only of an event with the
//     same event type (its table) and the same sg_event_id: SendGrid says
//     the id "is unique for every event where it is included";
//   - an event without one is a duplicate only of an event with the same
//     fingerprint: a hash of its whole parsed content in canonical form, so
//     key order and whitespace do not matter but every field does.
//
// Two events that differ in anything SendGrid sent (two opens of one
// message in the same second, under two ids) are two events.
//
// The id is the value the sg_event_id column holds (a string, or a number
// or boolean as its JSON text); an empty string, null, an object or an
// array is no id. When a member appears twice the first counts, as in
// DuckDB's JSON functions over _raw and in the typed columns.

// Key is an event's dedupe key: xxh3-128 of its event type and id, or its
// fingerprint.
type Key [16]byte

// IDKey is the key of an event of type table whose sg_event_id is id.
// (xxh3's Write never fails.)
func IDKey(table string, id []byte) Key {
	return keyOf(appendIDKeyInput(nil, table, id))
}

// keyOf is the key of what appendIDKeyInput built.
func keyOf(input []byte) Key { return xxh3.Hash128(input).Bytes() }

// appendIDKeyInput appends what IDKey hashes: one call on one buffer, where
// a streaming hasher would be allocated per event.
func appendIDKeyInput(dst []byte, table string, id []byte) []byte {
	dst = append(dst, "sg_event_id\x00"...)
	dst = append(dst, table...)
	dst = append(dst, 0)
	return append(dst, id...)
}

// DedupeSQL is the rule as a SQL expression over an event table's columns
// (event_type is the hive partition key, which is the table): rows with the
// same value are the same event. quote quotes an identifier. It reads
// _fingerprint only when there is no id, so it also holds for files written
// before _fingerprint was set only on events without one.
func DedupeSQL(quote func(string) string) string {
	return fmt.Sprintf("COALESCE('id:' || NULLIF(%s, ''), 'fp:' || %s)", quote("sg_event_id"), quote("_fingerprint"))
}

// ErrNoEvent is returned for input that is not one JSON object.
var ErrNoEvent = errors.New("event is not a JSON object")

// KeyReader finds the dedupe key of raw events; one per goroutine (it
// reuses its parser and buffers).
type KeyReader struct {
	p      fastjson.Parser
	c      canon
	tables map[string]string // event type -> table name, cached
}

// EventKey is what the dedupe rule needs to know of an event.
type EventKey struct {
	Table string
	// Time is the event's own time in Unix microseconds, 0 when unreadable.
	Time int64
	// ID is the sg_event_id (nil when the event has none); valid until the
	// next call.
	ID  []byte
	Key Key
	// Email is the text of the event's email member when it is a
	// non-empty string, nil otherwise; valid until the next call. Flush
	// sorts a partition's rows by it (one person's events side by side
	// compress far better, and row groups then bound the addresses they
	// hold).
	Email []byte
}

// Key reads raw's table, id and dedupe key.
func (k *KeyReader) Key(raw []byte) (EventKey, error) {
	if key, ok := k.quickKey(raw); ok {
		return key, nil
	}
	_, key, err := k.Parse(raw)
	return key, err
}

// quickKey is Key for the usual event without a parse tree: one walk over
// its bytes (jsonarray.Members) finds event, sg_event_id, timestamp and
// email. It declines (false) whatever needs the parser to get the same
// answer as Parse: bytes that are not UTF-8 or JSON Members does not
// accept, an escape in any key or in those values, an event without an id (its
// fingerprint is of the parsed event), a type or an id that is not a
// string, a timestamp that is not a plain integer. FuzzDedupeKey holds the
// two to the same answers.
func (k *KeyReader) quickKey(raw []byte) (EventKey, bool) {
	if !utf8.Valid(raw) {
		return EventKey{}, false
	}
	var event, id, ts, email []byte
	escaped := false
	ok := jsonarray.Members(raw, func(key, v []byte) {
		var p *[]byte
		switch string(key) {
		case "event":
			p = &event
		case "sg_event_id":
			p = &id
		case "timestamp":
			p = &ts
		case "email":
			p = &email
		default:
			escaped = escaped || bytes.IndexByte(key, '\\') >= 0
			return
		}
		if *p == nil { // the first of each name counts, as in Parse
			*p = v
		}
	})
	if !ok || escaped {
		return EventKey{}, false
	}
	out := EventKey{Table: "unknown"}
	if event != nil && string(event) != "null" {
		text, ok := plainString(event)
		if !ok {
			return EventKey{}, false
		}
		if k.tables == nil {
			k.tables = map[string]string{}
		}
		out.Table = tableOf(text, k.tables)
	}
	if out.ID, ok = plainString(id); !ok || len(out.ID) == 0 {
		return EventKey{}, false
	}
	if ts != nil && string(ts) != "null" {
		n, ok := plainInt(ts)
		if !ok {
			return EventKey{}, false
		}
		if n > 0 {
			out.Time = scaleMicros(n)
		}
	}
	if email != nil && email[0] == '"' {
		if out.Email, ok = plainString(email); !ok {
			return EventKey{}, false
		}
		if len(out.Email) == 0 {
			out.Email = nil
		}
	}
	out.Key = k.c.idKey(out.Table, out.ID)
	return out, true
}

// plainString returns the text of the JSON string v when it has no escape
// (so its bytes are its text).
func plainString(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') >= 0 {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

// plainInt reads a JSON number made of at most 18 digits, nothing else.
func plainInt(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Parse is Key that also returns the parsed event, valid until the next
// call, for callers that read more of it (forward).
func (k *KeyReader) Parse(raw []byte) (*fastjson.Value, EventKey, error) {
	if err := jsonarray.CheckEvent(raw); err != nil {
		return nil, EventKey{}, err
	}
	v, err := k.p.ParseBytes(raw)
	if err != nil {
		return nil, EventKey{}, fmt.Errorf("parse event: %w", err)
	}
	obj, err := v.Object()
	if err != nil {
		return nil, EventKey{}, ErrNoEvent
	}
	var m ruleMembers
	obj.Visit(m.see)
	out := EventKey{Table: eventTable(m.event, &k.c.buf, nil)}
	if m.timestamp != nil {
		if us, ok := toMicros(m.timestamp); ok {
			out.Time = us
		}
	}
	if m.email != nil && m.email.Type() == fastjson.TypeString {
		if e := m.email.GetStringBytes(); len(e) > 0 {
			out.Email = e
		}
	}
	out.ID, out.Key = k.c.key(out.Table, m.id, v)
	return v, out, nil
}

// ruleMembers are the members the rule and the partitioning read: the
// first of each name.
type ruleMembers struct{ event, id, timestamp, email *fastjson.Value }

func (m *ruleMembers) see(key []byte, v *fastjson.Value) {
	var p **fastjson.Value
	switch string(key) {
	case "event":
		p = &m.event
	case "sg_event_id":
		p = &m.id
	case "timestamp":
		p = &m.timestamp
	case "email":
		p = &m.email
	default:
		return
	}
	if *p == nil {
		*p = v
	}
}

// eventTable is the table of an event whose "event" member is v (nil when
// absent): TableName of its text, and "unknown" for none or null. cache,
// when set, memoises the mapping.
func eventTable(v *fastjson.Value, scratch *[]byte, cache map[string]string) string {
	if v == nil || v.Type() == fastjson.TypeNull {
		return "unknown"
	}
	var text []byte
	if v.Type() == fastjson.TypeString {
		text = v.GetStringBytes()
	} else {
		*scratch = v.MarshalTo((*scratch)[:0])
		text = *scratch
	}
	return tableOf(text, cache)
}

// tableOf is TableName of text, memoised in cache when it is set.
func tableOf(text []byte, cache map[string]string) string {
	if cache == nil {
		return TableName(string(text))
	}
	if t, ok := cache[string(text)]; ok {
		return t
	}
	t := TableName(string(text))
	if len(cache) < 1024 {
		cache[string(text)] = t
	}
	return t
}

// idText is the sg_event_id as its column holds it, or nil for no id.
func idText(v *fastjson.Value, scratch *[]byte) []byte {
	if v == nil {
		return nil
	}
	switch v.Type() {
	case fastjson.TypeString:
		if s := v.GetStringBytes(); len(s) > 0 {
			return s
		}
	case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		*scratch = v.MarshalTo((*scratch)[:0])
		return *scratch
	}
	return nil
}

// canon writes values in canonical JSON for fingerprints, reusing its
// buffers.
type canon struct {
	buf     []byte
	hbuf    []byte // what IDKey hashes
	members [][]memberRef
	depth   int
}

type memberRef struct {
	key []byte
	v   *fastjson.Value
}

// key applies the rule to an event of type table whose sg_event_id member
// is id (nil when absent) and whose parsed whole is event.
func (c *canon) key(table string, id, event *fastjson.Value) ([]byte, Key) {
	if text := idText(id, &c.buf); text != nil {
		return text, c.idKey(table, text)
	}
	return nil, c.fingerprint(event)
}

// idKey is IDKey on c's own buffer.
func (c *canon) idKey(table string, id []byte) Key {
	c.hbuf = appendIDKeyInput(c.hbuf[:0], table, id)
	return keyOf(c.hbuf)
}

// fingerprint is xxh3-128 of v in canonical JSON: object members sorted by
// key (members with equal keys keep their order), no whitespace, strings
// with only '"', '\' and control characters escaped (as \u00xx), numbers
// as written.
func (c *canon) fingerprint(v *fastjson.Value) Key {
	c.buf = c.append(c.buf[:0], v)
	return xxh3.Hash128(c.buf).Bytes()
}

func (c *canon) append(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		if c.depth == len(c.members) {
			c.members = append(c.members, nil)
		}
		ms := c.members[c.depth][:0]
		o.Visit(func(key []byte, v *fastjson.Value) { ms = append(ms, memberRef{key, v}) })
		slices.SortStableFunc(ms, func(a, b memberRef) int { return strings.Compare(string(a.key), string(b.key)) })
		c.members[c.depth] = ms
		c.depth++
		dst = append(dst, '{')
		for i, m := range ms {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, m.key)
			dst = append(dst, ':')
			dst = c.append(dst, m.v)
		}
		c.depth--
		return append(dst, '}')
	case fastjson.TypeArray:
		arr, _ := v.Array()
		dst = append(dst, '[')
		for i, it := range arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = c.append(dst, it)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		return appendJSONString(dst, v.GetStringBytes())
	default: // numbers as written, true, false, null
		return v.MarshalTo(dst)
	}
}

// FingerprintHex is the text of the _fingerprint column.
func FingerprintHex(k Key) []byte {
	var out [32]byte
	hex.Encode(out[:], k[:])
	return out[:]
}

// RowKey is the rule applied to a row's typed columns, DedupeSQL's twin in
// Go (compaction dedupes with it): within one event type and day, rows with
// equal keys are the same event. It appends the key to dst.
func RowKey(dst, sgEventID, fingerprint []byte) []byte {
	if len(sgEventID) > 0 {
		return append(append(dst, "id:"...), sgEventID...)
	}
	return append(append(dst, "fp:"...), fingerprint...)
}

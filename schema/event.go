package schema

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/sgload/sgload/internal/jsonarray"
)

// Metadata columns, on every row of every table.
var metaColumns = []Column{
	{Name: "_sequence", Kind: Int64, Required: true, Doc: "receipt order: Unix microseconds at receipt, strictly increasing per node; event i of a POST gets the POST's sequence + i"},
	{Name: "_received_at", Kind: Timestamp, Required: true, Doc: "when sgload accepted the POST (UTC)"},
	{Name: "_node", Kind: String, Required: true, Doc: "the sgload serve node that accepted it"},
}

// The event columns. Every event table has all of them: tables differ by
// content, not by shape, so a field SendGrid sends on an event type where we
// did not expect it still lands in its typed column, and the activity view
// is a plain UNION ALL.
var eventColumns = append(append([]Column{}, metaColumns...), []Column{
	{Name: "_source", Kind: String, Doc: "where sgload got the event: webhook (the Event Webhook) or logs_api (sgload backfill, from the Email Logs API); null in files written before sgload recorded it, which came from the webhook"},
	{Name: "event", Kind: String, Doc: "event type as sent"},
	{Name: "email", Kind: String, Doc: "recipient; null on some dropped events, absent on account events"},
	{Name: "timestamp", Kind: Timestamp, Doc: "when the event happened (UTC); from Unix seconds, or ms/µs when the number is that large, or a numeric string"},
	{Name: "sg_event_id", Kind: String, Doc: "SendGrid's unique event id"},
	{Name: "sg_message_id", Kind: String, Doc: "SendGrid message id; absent on async bounces"},
	{Name: "smtp_id", Kind: String, Doc: "from smtp-id"},
	{Name: "category", Kind: StringList, Doc: "categories; a single string becomes a one-item list"},
	{Name: "asm_group_id", Kind: Int64, Doc: "unsubscribe group id"},
	{Name: "ip", Kind: String, Doc: "sending IP (delivery events) or recipient IP (engagement events)"},
	{Name: "useragent", Kind: String, Doc: "recipient user agent (open, click, group events)"},
	{Name: "tls", Kind: Bool, Doc: "delivered over TLS; from 1/0, \"1\"/\"0\" or a boolean"},
	{Name: "cert_err", Kind: Bool, Doc: "certificate error; from 1/0, \"1\"/\"0\" or a boolean"},
	{Name: "reason", Kind: String, Doc: "bounce, block, deferral or drop reason"},
	{Name: "status", Kind: String, Doc: "enhanced SMTP status code, e.g. 5.0.0"},
	{Name: "response", Kind: String, Doc: "full SMTP response (delivered, deferred)"},
	{Name: "attempt", Kind: Int64, Doc: "delivery attempt (deferred); SendGrid sends a numeric string"},
	{Name: "type", Kind: String, Doc: "bounce or blocked (bounce events); the status on account_status_change"},
	{Name: "bounce_classification", Kind: String, Doc: "SendGrid's bounce classification"},
	{Name: "url", Kind: String, Doc: "clicked URL (click) or unsubscribe link (group events)"},
	{Name: "url_offset_index", Kind: Int64, Doc: "from url_offset.index: which of identical links"},
	{Name: "url_offset_type", Kind: String, Doc: "from url_offset.type: html, text, header or amp"},
	{Name: "sg_machine_open", Kind: Bool, Doc: "machine open (Apple Mail Privacy Protection)"},
	{Name: "sg_content_type", Kind: String, Doc: "html, text, header or amp"},
	{Name: "pool_name", Kind: String, Doc: "from pool.name: IP pool"},
	{Name: "pool_id", Kind: Int64, Doc: "from pool.id (a number or a numeric string)"},
	{Name: "send_at", Kind: Timestamp, Doc: "scheduled send time; from seconds or milliseconds"},
	{Name: "marketing_campaign_id", Kind: Int64, Doc: "legacy Marketing Campaigns id"},
	{Name: "marketing_campaign_name", Kind: String, Doc: "legacy Marketing Campaigns name"},
	{Name: "marketing_campaign_version", Kind: String, Doc: "A/B test version"},
	{Name: "marketing_campaign_split_id", Kind: Int64, Doc: "A/B test split id"},
	{Name: "singlesend_id", Kind: String, Doc: "single send id"},
	{Name: "singlesend_name", Kind: String, Doc: "single send name"},
	{Name: "template_id", Kind: String, Doc: "template id"},
	{Name: "template_version_id", Kind: String, Doc: "template version id"},
	{Name: "template_hash", Kind: String, Doc: "template hash"},
	{Name: "sg_template_id", Kind: String, Doc: "SendGrid template id"},
	{Name: "sg_template_name", Kind: String, Doc: "SendGrid template name"},
	{Name: "mc_stats", Kind: String, Doc: "singlesend or automation"},
	{Name: "phase_id", Kind: String, Doc: "send or test"},
	{Name: "post_type", Kind: String, Doc: "legacy Marketing Campaigns post type"},
	{Name: "sg_user_id", Kind: Int64, Doc: "SendGrid user id"},
	{Name: "reseller_id", Kind: String, Doc: "reseller id (unsubscribe)"},
	{Name: "domain", Kind: String, Doc: "recipient domain (deferred)"},
	{Name: "from_address", Kind: String, Doc: "from `from` (deferred)"},
	{Name: "custom_args", Kind: String, Doc: "JSON object of every top-level key without a column here: your unique args/custom args"},
	{Name: "_fingerprint", Kind: String, Doc: "on events without an sg_event_id, their dedupe key: hex xxh3-128 of the event in canonical JSON (key order and whitespace aside, every field counts)"},
	{Name: "_raw", Kind: String, Doc: "the event exactly as received (JSON)"},
	{Name: "_errors", Kind: StringList, Doc: "one entry per value that could not be coerced into its column (the row is kept; the value is in _raw)"},
}...)

// EventColumns returns the columns every event table has, in file order.
func EventColumns() []Column { return eventColumns }

// EventTable returns the table for events whose type normalises to name.
func EventTable(name string) *Table {
	return &Table{Name: name, Columns: eventColumns, Doc: "SendGrid " + name + " events, one row per event", event: true}
}

// EventSchemaName names the Parquet schema of every event table: they share
// one shape, so one writer serves them all.
const EventSchemaName = "sendgrid_event"

// KnownEventTypes are the SendGrid event types documented today; any other
// type gets a table of its own, made the first time it is seen.
var KnownEventTypes = []string{
	"processed", "dropped", "delivered", "deferred", "bounce", "open", "click",
	"spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe", "account_status_change",
}

// TableName normalises an event type into a table name: lower case, runs of
// anything but a-z, 0-9 and _ become _, at most 63 bytes; "unknown" when
// nothing is left.
func TableName(event string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(event) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_'
		if !ok || r == '_' {
			if !under && b.Len() > 0 {
				b.WriteByte('_')
			}
			under = true
			continue
		}
		b.WriteRune(r)
		under = false
	}
	name := strings.TrimRight(b.String(), "_")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "_")
	}
	if name == "" {
		return "unknown"
	}
	return name
}

// Meta is what sgload knows about an event besides its JSON.
type Meta struct {
	Sequence   int64
	ReceivedAt int64 // Unix microseconds
	Node       string
	// Source is SourceWebhook (when empty) or SourceLogsAPI.
	Source string
}

// Where events come from (the _source column).
const (
	SourceWebhook = "webhook"
	SourceLogsAPI = "logs_api"
)

// Event is one parsed event, between EventMapper.Parse and Append.
type Event struct {
	Raw   []byte
	Table string
	// Time is the event's own time in Unix microseconds (from "timestamp"),
	// or 0 when it has none that can be read.
	Time int64
	// ID is its sg_event_id as the column holds it, nil when it has none.
	ID []byte
	// Key is its dedupe key (see DedupeSQL for the rule).
	Key Key

	errs []string
}

// ErrNotObject is returned for an array element that is not a JSON object.
var ErrNotObject = errors.New("event is not a JSON object")

// EventMapper maps raw SendGrid events onto the event columns. It reuses
// its buffers: an Event is valid until the next Parse. One mapper per
// goroutine.
type EventMapper struct {
	p       fastjson.Parser
	ev      Event
	fields  []field // the event's members, in order
	custom  []byte
	scratch []byte
	items   [][]byte
	tables  map[string]string // event type -> table name, cached
	cols    eventIndexes
	canon   canon
}

type field struct {
	key []byte
	f   fieldFunc // nil: goes to custom_args
	v   *fastjson.Value
}

// ErrTooDeep and ErrNotUTF8 are events that serve refuses (and flush
// quarantines, in spools written before serve refused them): see
// jsonarray.CheckEvent, the rule both apply.
var (
	ErrTooDeep = jsonarray.ErrTooDeep
	ErrNotUTF8 = jsonarray.ErrNotUTF8
)

type eventIndexes struct {
	seq, recv, node, source, custom, fingerprint, raw, errs int
}

var eventTemplate = EventTable("x")

// NewEventMapper returns a mapper.
func NewEventMapper() *EventMapper {
	t := eventTemplate
	return &EventMapper{tables: map[string]string{}, cols: eventIndexes{
		seq: t.MustIndex("_sequence"), recv: t.MustIndex("_received_at"), node: t.MustIndex("_node"), source: t.MustIndex("_source"),
		custom: t.MustIndex("custom_args"), fingerprint: t.MustIndex("_fingerprint"), raw: t.MustIndex("_raw"),
		errs: t.MustIndex("_errors"),
	}}
}

// Parse reads one event (a JSON object, as received).
func (m *EventMapper) Parse(raw []byte) (*Event, error) {
	if err := jsonarray.CheckEvent(raw); err != nil {
		return nil, err
	}
	return m.ParseChecked(raw)
}

// ParseChecked is Parse for an event that has passed jsonarray.CheckEvent
// already: flush's first pass checks every event it keeps, and the check
// costs as much as the parse. (Mapping the event straight from its bytes
// with jsonarray.Members, as the first pass reads its key, was tried: no
// faster than fastjson's tree here, where every member is read.)
func (m *EventMapper) ParseChecked(raw []byte) (*Event, error) {
	v, err := m.p.ParseBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("parse event: %w", err)
	}
	obj, err := v.Object()
	if err != nil {
		return nil, ErrNotObject
	}
	e := &m.ev
	*e = Event{Raw: raw, errs: e.errs[:0]}
	m.fields = m.fields[:0]
	// A member that appears twice counts the first time, in every column
	// (custom_args too) as in the rule's members and in DuckDB's JSON
	// functions over _raw: a later one is skipped whole, so a null or
	// malformed first value is not replaced by a later one either.
	var rm ruleMembers
	var typed uint64 // typed fields seen, by id
	obj.Visit(func(key []byte, v *fastjson.Value) {
		f, id := eventFieldTable.lookup(key)
		if f != nil {
			if typed&(1<<id) != 0 {
				return
			}
			typed |= 1 << id
		} else if m.seenCustom(key) {
			return
		}
		m.fields = append(m.fields, field{key: key, f: f, v: v})
		rm.see(key, v)
	})
	e.Table = eventTable(rm.event, &m.scratch, m.tables)
	if rm.timestamp != nil {
		if us, ok := toMicros(rm.timestamp); ok {
			e.Time = us
		}
	}
	e.ID, e.Key = m.canon.key(e.Table, rm.id, v)
	return e, nil
}

// seenCustom reports whether a member named key without a column is
// already among the event's fields (events have few such members).
func (m *EventMapper) seenCustom(key []byte) bool {
	for _, fd := range m.fields {
		if fd.f == nil && string(fd.key) == string(key) {
			return true
		}
	}
	return false
}

// Append adds e as a row of b.
func (m *EventMapper) Append(b *Batch, e *Event, meta Meta) {
	c := m.cols
	b.SetInt64(c.seq, meta.Sequence)
	b.SetInt64(c.recv, meta.ReceivedAt)
	b.SetString(c.node, []byte(meta.Node))
	if meta.Source == "" {
		meta.Source = SourceWebhook
	}
	b.SetString(c.source, []byte(meta.Source))
	m.custom = append(m.custom[:0], '{')
	for _, fd := range m.fields {
		if fd.f != nil {
			fd.f(m, b, e, fd.v)
			continue
		}
		if len(m.custom) > 1 {
			m.custom = append(m.custom, ',')
		}
		m.custom = appendJSONString(m.custom, fd.key)
		m.custom = append(m.custom, ':')
		m.custom = fd.v.MarshalTo(m.custom)
	}
	if len(m.custom) > 1 {
		b.SetString(c.custom, append(m.custom, '}'))
	}
	if e.ID == nil { // the fingerprint is the key only of events without an id
		b.SetString(c.fingerprint, FingerprintHex(e.Key))
	}
	b.SetString(c.raw, e.Raw)
	if m.items == nil {
		m.items = make([][]byte, 0, 4) // a nil list would be a null _errors; a clean row has []
	}
	m.items = m.items[:0]
	for _, s := range e.errs {
		m.items = append(m.items, []byte(s))
	}
	b.SetList(c.errs, m.items)
	b.End()
}

// Errors returns the coercion errors of the last Append.
func (e *Event) Errors() []string { return e.errs }

type fieldFunc func(m *EventMapper, b *Batch, e *Event, v *fastjson.Value)

var (
	eventFields     = map[string]fieldFunc{}
	eventFieldTable fieldTable
)

// fieldTable finds a member's handler without hashing the key through a Go
// map: a flush looks up every member of every event, and this open-addressing
// table on a cheap hash is several times faster.
type fieldTable struct {
	slots [256]struct {
		key string
		f   fieldFunc
		id  uint8 // 0..63, for the set of fields seen in an event
	}
}

func fieldHash(key []byte) uint8 {
	h := uint32(len(key)) * 0x9E3779B1
	for _, c := range key {
		h = (h ^ uint32(c)) * 0x01000193
	}
	return uint8(h ^ h>>8 ^ h>>16)
}

func (t *fieldTable) add(key string, f fieldFunc, id uint8) {
	for i := fieldHash([]byte(key)); ; i++ {
		if t.slots[i].f == nil {
			t.slots[i].key, t.slots[i].f, t.slots[i].id = key, f, id
			return
		}
	}
}

func (t *fieldTable) lookup(key []byte) (fieldFunc, uint8) {
	for i := fieldHash(key); ; i++ {
		s := &t.slots[i]
		if s.f == nil {
			return nil, 0
		}
		if s.key == string(key) {
			return s.f, s.id
		}
	}
}

func init() {
	t := eventTemplate
	for _, c := range t.Columns {
		if strings.HasPrefix(c.Name, "_") || c.Name == "custom_args" {
			continue
		}
		i := t.MustIndex(c.Name)
		switch c.Kind {
		case String:
			eventFields[c.Name] = stringField(i, c.Name)
		case Int64:
			eventFields[c.Name] = intField(i, c.Name)
		case Bool:
			eventFields[c.Name] = boolField(i, c.Name)
		case Timestamp:
			eventFields[c.Name] = timeField(i, c.Name)
		case StringList:
			eventFields[c.Name] = listField(i, c.Name)
		}
	}
	// SendGrid names that differ from the column, and nested objects.
	eventFields["smtp-id"] = stringField(t.MustIndex("smtp_id"), "smtp-id")
	eventFields["from"] = stringField(t.MustIndex("from_address"), "from")
	delete(eventFields, "smtp_id")
	delete(eventFields, "from_address")
	delete(eventFields, "url_offset_index")
	delete(eventFields, "url_offset_type")
	delete(eventFields, "pool_name")
	delete(eventFields, "pool_id")
	eventFields["url_offset"] = objectField("url_offset",
		subField{"index", intField(t.MustIndex("url_offset_index"), "url_offset.index")},
		subField{"type", stringField(t.MustIndex("url_offset_type"), "url_offset.type")})
	eventFields["pool"] = objectField("pool",
		subField{"name", stringField(t.MustIndex("pool_name"), "pool.name")},
		subField{"id", intField(t.MustIndex("pool_id"), "pool.id")})
	keys := make([]string, 0, len(eventFields))
	for k := range eventFields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 64 {
		panic("schema: more than 64 event fields; widen the set in EventMapper.Parse")
	}
	for id, k := range keys {
		eventFieldTable.add(k, eventFields[k], uint8(id))
	}
}

// IsEventField reports whether key is a top-level SendGrid field with a
// column of its own (smtp-id, url_offset and pool included); every other
// top-level key is a custom arg, kept in custom_args.
func IsEventField(key string) bool {
	_, ok := eventFields[key]
	return ok
}

func (e *Event) fail(field string, v *fastjson.Value, want string) {
	got := v.String()
	if len(got) > 80 {
		got = got[:77] + "..."
	}
	e.errs = append(e.errs, fmt.Sprintf("%s: want %s, got %s", field, want, got))
}

func stringField(col int, name string) fieldFunc {
	return func(m *EventMapper, b *Batch, e *Event, v *fastjson.Value) {
		switch v.Type() {
		case fastjson.TypeNull:
		case fastjson.TypeString:
			b.SetString(col, v.GetStringBytes())
		case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
			// A number where text is expected (status 500) loses nothing.
			m.scratch = v.MarshalTo(m.scratch[:0])
			b.SetString(col, m.scratch)
		default:
			e.fail(name, v, "a string")
		}
	}
}

func intField(col int, name string) fieldFunc {
	return func(m *EventMapper, b *Batch, e *Event, v *fastjson.Value) {
		if v.Type() == fastjson.TypeNull {
			return
		}
		if n, ok := toInt(v); ok {
			b.SetInt64(col, n)
			return
		}
		e.fail(name, v, "an integer")
	}
}

func boolField(col int, name string) fieldFunc {
	return func(m *EventMapper, b *Batch, e *Event, v *fastjson.Value) {
		switch v.Type() {
		case fastjson.TypeNull:
			return
		case fastjson.TypeTrue:
			b.SetBool(col, true)
			return
		case fastjson.TypeFalse:
			b.SetBool(col, false)
			return
		}
		if n, ok := toInt(v); ok && (n == 0 || n == 1) {
			b.SetBool(col, n == 1)
			return
		}
		if v.Type() == fastjson.TypeString {
			switch strings.ToLower(string(v.GetStringBytes())) {
			case "true":
				b.SetBool(col, true)
				return
			case "false":
				b.SetBool(col, false)
				return
			}
		}
		e.fail(name, v, "a boolean (true/false, 1/0)")
	}
}

func timeField(col int, name string) fieldFunc {
	return func(m *EventMapper, b *Batch, e *Event, v *fastjson.Value) {
		if v.Type() == fastjson.TypeNull {
			return
		}
		if n, ok := toInt(v); ok && n == 0 {
			return // SendGrid's "not set" (send_at 0 on unscheduled sends)
		}
		if us, ok := toMicros(v); ok {
			b.SetInt64(col, us)
			return
		}
		e.fail(name, v, "Unix seconds")
	}
}

func listField(col int, name string) fieldFunc {
	return func(m *EventMapper, b *Batch, e *Event, v *fastjson.Value) {
		switch v.Type() {
		case fastjson.TypeNull:
			return
		case fastjson.TypeString:
			m.items = append(m.items[:0], v.GetStringBytes())
			b.SetList(col, m.items)
		case fastjson.TypeArray:
			arr, _ := v.Array()
			m.items = m.items[:0]
			for _, it := range arr {
				switch it.Type() {
				case fastjson.TypeString:
					m.items = append(m.items, it.GetStringBytes())
				case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
					m.items = append(m.items, []byte(it.String()))
				default:
					e.fail(name, it, "strings in the list")
				}
			}
			if m.items == nil {
				m.items = [][]byte{}
			}
			b.SetList(col, m.items)
		case fastjson.TypeNumber:
			b.SetList(col, [][]byte{[]byte(v.String())})
		default:
			e.fail(name, v, "a string or a list of strings")
		}
	}
}

// subField is a member of a nested object that has a column.
type subField struct {
	name string
	f    fieldFunc
}

func objectField(name string, fields ...subField) fieldFunc {
	return func(m *EventMapper, b *Batch, e *Event, v *fastjson.Value) {
		switch v.Type() {
		case fastjson.TypeNull:
			return
		case fastjson.TypeObject:
		default:
			e.fail(name, v, "an object")
			return
		}
		o, _ := v.Object()
		var seen uint8 // the first of each member counts, as in DuckDB
		o.Visit(func(key []byte, sub *fastjson.Value) {
			for i, sf := range fields {
				if sf.name == string(key) && seen&(1<<i) == 0 {
					seen |= 1 << i
					sf.f(m, b, e, sub)
				}
			}
		})
	}
}

// toInt reads an integer from a number or a numeric string.
func toInt(v *fastjson.Value) (int64, bool) {
	switch v.Type() {
	case fastjson.TypeNumber:
		if n, err := v.Int64(); err == nil {
			return n, true
		}
		f, err := v.Float64()
		if err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<62 {
			return int64(f), true
		}
	case fastjson.TypeString:
		s := strings.TrimSpace(string(v.GetStringBytes()))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, true
		}
		f, err := strconv.ParseFloat(s, 64)
		if err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<62 {
			return int64(f), true
		}
	}
	return 0, false
}

// toMicros reads a Unix time: seconds normally, but SendGrid's own examples
// also show milliseconds; values too large to be seconds are taken as ms,
// µs or ns. Numeric strings and fractional seconds are accepted.
func toMicros(v *fastjson.Value) (int64, bool) {
	var f float64
	switch v.Type() {
	case fastjson.TypeNumber:
		if n, err := v.Int64(); err == nil {
			return scaleMicros(n), n > 0
		}
		var err error
		if f, err = v.Float64(); err != nil {
			return 0, false
		}
	case fastjson.TypeString:
		s := strings.TrimSpace(string(v.GetStringBytes()))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return scaleMicros(n), n > 0
		}
		var err error
		if f, err = strconv.ParseFloat(s, 64); err != nil {
			for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
				if t, err := time.Parse(layout, s); err == nil {
					return t.UnixMicro(), true
				}
			}
			return 0, false
		}
	default:
		return 0, false
	}
	if f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) || f >= 1e11 {
		if f >= 1e11 && f < 9e18 {
			return scaleMicros(int64(f)), true
		}
		return 0, false
	}
	return int64(math.Round(f * 1e6)), true
}

func scaleMicros(n int64) int64 {
	switch {
	case n >= 1e17: // nanoseconds
		return n / 1000
	case n >= 1e14: // microseconds
		return n
	case n >= 1e11: // milliseconds (1e11 s is the year 5138)
		return n * 1000
	default:
		return n * 1e6
	}
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, fmt.Sprintf(`\u%04x`, c)...)
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

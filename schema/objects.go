package schema

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/valyala/fastjson"
	"github.com/zeebo/xxh3"
)

// Mode is how a collection is synced.
type Mode string

// Sync modes.
const (
	// Full snapshots hold every object: one missing from the latest complete
	// full snapshot has been deleted.
	Full Mode = "full"
	// Incremental snapshots hold what changed since the last sync (with a
	// lookback); deletions show only at the next full snapshot.
	Incremental Mode = "incremental"
)

// Collection is a SendGrid object collection and its table.
type Collection struct {
	Name string
	// Key lists the primary key's columns.
	Key []string
	// Fields are the typed columns, each from the JSON member of the same
	// name unless Path says otherwise.
	Fields []Field
	// Mode is the sync mode by default.
	Mode Mode
	// AgesOut says the API forgets objects after a while (the Email
	// Activity API keeps 30 days of messages): one missing from a full
	// snapshot has aged out, not been deleted, and keeps its latest version.
	AgesOut bool
	Doc     string
}

// Field is one typed column of a collection.
type Field struct {
	Column
	// Path is the JSON member, dotted for nested ones ("_metadata.self");
	// empty means the column's name.
	Path string
}

// Metadata columns of every object row, in front of its fields.
var objectMeta = []Column{
	{Name: "_sequence", Kind: Int64, Required: true, Doc: "version order: increasing per node; the latest version of an object has the largest"},
	{Name: "_sync_id", Kind: String, Required: true, Doc: "the sync (snapshot) the row came from; see sync_snapshots"},
	{Name: "_synced_at", Kind: Timestamp, Required: true, Doc: "when the API returned it (UTC)"},
	{Name: "_node", Kind: String, Required: true, Doc: "the sgload node that ran the sync"},
}

var objectTail = []Column{
	{Name: "_raw", Kind: String, Doc: "the object as the API returned it, re-serialised compactly (JSON)"},
	{Name: "_errors", Kind: StringList, Doc: "one entry per value that could not be coerced"},
}

func f(name string, k Kind, doc string) Field {
	return Field{Column: Column{Name: name, Kind: k, Doc: doc}}
}

func suppression(name, doc string, extra ...Field) *Collection {
	return &Collection{Name: name, Key: []string{"email"}, Mode: Incremental, Doc: doc,
		Fields: append([]Field{
			f("email", String, "the suppressed address"),
			f("created", Timestamp, "when it was suppressed"),
		}, extra...)}
}

// Collections are every collection sgload syncs, by name.
var Collections = map[string]*Collection{}

// Snapshots is the table of complete snapshots, one row each (written by
// sync as the record that closes a snapshot): the latest-state views read
// it to tell a deleted object from one that a failed sync did not fetch.
var Snapshots = &Collection{Name: "sync_snapshots", Key: []string{"sync_id"}, Mode: Full,
	Doc: "one row per complete snapshot of a collection",
	Fields: []Field{
		f("collection", String, "the collection"),
		f("sync_id", String, "the snapshot (the _sync_id of its rows)"),
		f("mode", String, "full or incremental"),
		f("rows", Int64, "objects in the snapshot"),
		f("pages", Int64, "API pages read"),
		f("since", Timestamp, "incremental: the start of the window fetched"),
		f("started_at", Timestamp, "when the snapshot started"),
		f("finished_at", Timestamp, "when its last page arrived"),
	}}

func init() {
	for _, c := range []*Collection{
		// Segment's collections: the legacy Marketing Campaigns API.
		{Name: "lists", Key: []string{"id"}, Mode: Full, Doc: "legacy Marketing Campaigns contact lists (GET /v3/contactdb/lists)",
			Fields: []Field{f("id", Int64, "list id"), f("name", String, "name"), f("recipient_count", Int64, "recipients")}},
		{Name: "segments", Key: []string{"id"}, Mode: Full, Doc: "legacy Marketing Campaigns segments (GET /v3/contactdb/segments)",
			Fields: []Field{f("id", Int64, "segment id"), f("name", String, "name"), f("list_id", Int64, "list it filters"),
				f("recipient_count", Int64, "recipients"), f("conditions", String, "conditions (JSON)")}},
		{Name: "recipients", Key: []string{"id"}, Mode: Full, Doc: "legacy Marketing Campaigns recipients (GET /v3/contactdb/recipients)",
			Fields: []Field{f("id", String, "recipient id"), f("email", String, "address"), f("first_name", String, ""),
				f("last_name", String, ""), f("created_at", Timestamp, ""), f("updated_at", Timestamp, ""),
				f("last_emailed", Timestamp, ""), f("last_clicked", Timestamp, ""), f("last_opened", Timestamp, ""),
				f("custom_fields", String, "custom fields (JSON)")}},
		{Name: "campaigns", Key: []string{"id"}, Mode: Full, Doc: "legacy Marketing Campaigns campaigns (GET /v3/campaigns)",
			Fields: []Field{f("id", Int64, "campaign id"), f("title", String, ""), f("subject", String, ""), f("sender_id", Int64, ""),
				f("list_ids", StringList, ""), f("segment_ids", StringList, ""), f("categories", StringList, ""),
				f("suppression_group_id", Int64, ""), f("custom_unsubscribe_url", String, ""), f("ip_pool", String, ""),
				f("editor", String, ""), f("status", String, ""), f("html_content", String, ""), f("plain_content", String, "")}},
		// The new Marketing Campaigns API.
		{Name: "mc_lists", Key: []string{"id"}, Mode: Full, Doc: "Marketing Campaigns lists (GET /v3/marketing/lists)",
			Fields: []Field{f("id", String, "list id"), f("name", String, ""), f("contact_count", Int64, "")}},
		{Name: "mc_segments", Key: []string{"id"}, Mode: Full, Doc: "Marketing Campaigns segments 2.0 (GET /v3/marketing/segments/2.0)",
			Fields: []Field{f("id", String, "segment id"), f("name", String, ""), f("contacts_count", Int64, ""),
				f("created_at", Timestamp, ""), f("updated_at", Timestamp, ""), f("sample_updated_at", Timestamp, ""),
				f("next_sample_update", Timestamp, ""), f("parent_list_ids", StringList, ""), f("query_version", String, ""),
				f("status", String, "status (JSON)")}},
		{Name: "mc_contacts", Key: []string{"contact_id"}, Mode: Full, Doc: "Marketing Campaigns contacts, through the export job (POST /v3/marketing/contacts/exports)",
			Fields: []Field{f("contact_id", String, "contact id (CONTACT_ID; id in JSON exports)"), f("email", String, ""),
				f("first_name", String, ""), f("last_name", String, ""), f("phone_number", String, ""), f("city", String, ""),
				f("state_province_region", String, ""), f("postal_code", String, ""), f("country", String, ""),
				f("list_ids", StringList, ""), f("created_at", Timestamp, ""), f("updated_at", Timestamp, ""),
				f("external_id", String, "your own id for the contact (a contact identifier; sgload forward --user-id-from-contacts uses it)")}},
		{Name: "singlesends", Key: []string{"id"}, Mode: Full, Doc: "single sends (GET /v3/marketing/singlesends)",
			Fields: []Field{f("id", String, "single send id"), f("name", String, ""), f("status", String, ""),
				f("categories", StringList, ""), f("send_at", Timestamp, ""), f("is_abtest", Bool, ""),
				f("created_at", Timestamp, ""), f("updated_at", Timestamp, "")}},
		{Name: "field_definitions", Key: []string{"id"}, Mode: Full, Doc: "custom and reserved field definitions (GET /v3/marketing/field_definitions)",
			Fields: []Field{f("id", String, "field id"), f("name", String, ""), f("field_type", String, ""),
				f("read_only", Bool, "reserved fields"), f("reserved", Bool, "a reserved field")}},
		// Suppressions: pulled incrementally by their created time.
		suppression("bounces", "bounced addresses (GET /v3/suppression/bounces)", f("reason", String, ""), f("status", String, "")),
		suppression("blocks", "blocked addresses (GET /v3/suppression/blocks)", f("reason", String, ""), f("status", String, "")),
		suppression("spam_reports", "spam reports (GET /v3/suppression/spam_reports)", f("ip", String, "")),
		suppression("invalid_emails", "invalid addresses (GET /v3/suppression/invalid_emails)", f("reason", String, "")),
		suppression("global_unsubscribes", "global unsubscribes (GET /v3/suppression/unsubscribes)"),
		{Name: "unsubscribe_groups", Key: []string{"id"}, Mode: Full, Doc: "unsubscribe (ASM) groups (GET /v3/asm/groups)",
			Fields: []Field{f("id", Int64, "group id"), f("name", String, ""), f("description", String, ""),
				f("is_default", Bool, ""), f("unsubscribes", Int64, "members")}},
		{Name: "unsubscribe_group_members", Key: []string{"group_id", "email"}, Mode: Full, Doc: "members of each unsubscribe group (GET /v3/asm/groups/{id}/suppressions)",
			Fields: []Field{f("group_id", Int64, "group id"), f("email", String, "the unsubscribed address")}},
		{Name: "messages", Key: []string{"msg_id"}, Mode: Incremental, AgesOut: true, Doc: "messages of the Email Activity API, 30 days kept (GET /v3/messages), incremental on last_event_time",
			Fields: []Field{f("msg_id", String, "message id"), f("from_email", String, ""), f("to_email", String, ""),
				f("subject", String, ""), f("status", String, "processed, delivered, not_delivered"),
				f("opens_count", Int64, ""), f("clicks_count", Int64, ""), f("last_event_time", Timestamp, "")}},
		{Name: "templates", Key: []string{"id"}, Mode: Full, Doc: "legacy and dynamic templates (GET /v3/templates?generations=legacy,dynamic)",
			Fields: []Field{f("id", String, "template id"), f("name", String, ""), f("generation", String, "legacy or dynamic"),
				f("updated_at", Timestamp, ""), f("versions", String, "versions (JSON)")}},
	} {
		Collections[c.Name] = c
	}
}

// CollectionNames lists the collections, sorted.
func CollectionNames() []string {
	out := make([]string, 0, len(Collections))
	for n := range Collections {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Table returns the collection's table.
func (c *Collection) Table() *Table {
	cols := append([]Column{}, objectMeta...)
	for _, fd := range c.Fields {
		cols = append(cols, fd.Column)
	}
	return &Table{Name: c.Name, Key: c.Key, Doc: c.Doc, Columns: append(cols, objectTail...)}
}

// ObjectMeta is what sgload knows about an object besides its JSON.
type ObjectMeta struct {
	Sequence int64
	SyncID   string
	SyncedAt int64 // Unix microseconds
	Node     string
}

// ObjectMapper maps API objects of one collection onto its table.
type ObjectMapper struct {
	table     *Table
	em        *EventMapper // scratch buffers and the coercion functions
	p         fastjson.Parser
	funcs     []fieldFunc
	paths     [][]string
	raw, errs int // column indexes
	e         Event
	items     [][]byte
}

// NewObjectMapper returns a mapper for c.
func NewObjectMapper(c *Collection) *ObjectMapper {
	t := c.Table()
	m := &ObjectMapper{table: t, em: NewEventMapper(), raw: t.MustIndex("_raw"), errs: t.MustIndex("_errors"),
		items: make([][]byte, 0, 4)}
	for _, fd := range c.Fields {
		col := t.MustIndex(fd.Name)
		var ff fieldFunc
		switch fd.Kind {
		case String:
			ff = stringOrJSONField(col, fd.Name)
		case Int64:
			ff = intField(col, fd.Name)
		case Bool:
			ff = boolField(col, fd.Name)
		case Timestamp:
			ff = timeField(col, fd.Name)
		case StringList:
			ff = listField(col, fd.Name)
		}
		path := fd.Path
		if path == "" {
			path = fd.Name
		}
		m.funcs = append(m.funcs, ff)
		m.paths = append(m.paths, strings.Split(path, "."))
	}
	return m
}

// Table is the collection's table.
func (m *ObjectMapper) Table() *Table { return m.table }

// Append adds the object raw as a row of b and returns the coercion errors
// (valid until the next Append).
func (m *ObjectMapper) Append(b *Batch, raw []byte, meta ObjectMeta) ([]string, error) {
	v, err := m.p.ParseBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("parse object: %w", err)
	}
	if v.Type() != fastjson.TypeObject {
		return nil, ErrNotObject
	}
	e := &m.e
	e.errs = e.errs[:0]
	b.SetInt64(0, meta.Sequence)
	b.SetString(1, []byte(meta.SyncID))
	b.SetInt64(2, meta.SyncedAt)
	b.SetString(3, []byte(meta.Node))
	for i, ff := range m.funcs {
		if fv := v.Get(m.paths[i]...); fv != nil {
			ff(m.em, b, e, fv)
		}
	}
	b.SetString(m.raw, raw)
	m.items = m.items[:0]
	for _, s := range e.errs {
		m.items = append(m.items, []byte(s))
	}
	b.SetList(m.errs, m.items)
	b.End()
	return e.errs, nil
}

// stringOrJSONField is stringField that keeps objects and arrays as JSON
// text (conditions, custom fields, versions) instead of refusing them.
func stringOrJSONField(col int, name string) fieldFunc {
	plain := stringField(col, name)
	return func(m *EventMapper, b *Batch, e *Event, v *fastjson.Value) {
		switch v.Type() {
		case fastjson.TypeObject, fastjson.TypeArray:
			m.scratch = v.MarshalTo(m.scratch[:0])
			b.SetString(col, m.scratch)
		default:
			plain(m, b, e, v)
		}
	}
}

// SnapshotID returns a stable id for a collection's snapshot that started
// at the given sequence.
func SnapshotID(collection, node string, seq int64) string {
	h := xxh3.HashString128(fmt.Sprintf("%s/%s/%d", collection, node, seq)).Bytes()
	return hex.EncodeToString(h[:8])
}

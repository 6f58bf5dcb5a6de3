// Package sqlviews writes the SQL that puts warehouse tables over a bucket
// flush wrote: external tables (BigQuery, Snowflake) or read_parquet views
// (DuckDB) with the schema package's column types, one deduplicated view per
// event table, an activity view across every event type, the latest state
// of each message and each recipient, a latest-state view per object
// collection, and, on request, the table names and columns Segment's or
// Stitch's SendGrid sources give. It is generated from package schema, so
// the SQL and the files never disagree.
//
// Every identifier it writes is quoted (DuckDB and Snowflake with double
// quotes, BigQuery with backticks), so a column, view or event type that is
// a reserved word in some dialect (Snowflake's ROWS, a new event type named
// "select") never breaks a statement. Snowflake identifiers are quoted in
// upper case, which is how Snowflake stores unquoted ones: users still query
// them without quotes, except the reserved ones.
package sqlviews

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/sgload/sgload/internal/redact"
	"github.com/sgload/sgload/schema"
)

// Dialect is a SQL dialect.
type Dialect string

// The dialects sgload writes.
const (
	DuckDB    Dialect = "duckdb"
	BigQuery  Dialect = "bigquery"
	Snowflake Dialect = "snowflake"
)

// Dialects lists them.
var Dialects = []Dialect{DuckDB, BigQuery, Snowflake}

// Naming chooses the names of the event and object views.
type Naming string

// The namings sgload writes.
const (
	// NamingSgload is sgload's own: a view per event type named after it,
	// activity, <collection>_latest.
	NamingSgload Naming = "sgload"
	// NamingSegment adds Segment's SendGrid source tables, with its names
	// and columns: activity, _open, click, bounce, delivered, processed,
	// dropped, deferred, unsubscribe, spam_report, and the objects lists,
	// segments, recipients and campaigns.
	NamingSegment Naming = "segment"
	// NamingStitch adds Stitch's SendGrid webhook table, data (with its
	// _sdc_ columns), and its category subtable data__category.
	NamingStitch Naming = "stitch"
)

// Namings lists them.
var Namings = []Naming{NamingSgload, NamingSegment, NamingStitch}

// Options say what to write.
type Options struct {
	Dialect Dialect
	// Bucket is the URL flush wrote to (s3://, gs://, azblob://, file://, or
	// a local path); Prefix the key prefix inside it.
	Bucket string
	Prefix string
	// Schema is the dataset (BigQuery, may be project.dataset), schema
	// (Snowflake, may be database.schema) or schema (DuckDB) to create.
	Schema string
	// EventTypes get a view each; schema.KnownEventTypes always do.
	EventTypes []string
	// Collections get a history table and a latest-state view each; nil
	// means every collection sgload syncs. DuckDB needs only the ones that
	// exist in the bucket (sgload views finds them).
	Collections []string
	// Naming adds the views of a seed system (Segment, Stitch); empty is
	// NamingSgload.
	Naming Naming
	// Connection is BigQuery's connection for s3:// and azblob:// buckets
	// (BigQuery Omni), project.location.connection; gs:// buckets need none.
	Connection string
	// Location is the BigQuery dataset's location (EU, us-east4,
	// aws-us-east-1): it must be the bucket's (or, with BigQuery Omni, the
	// connection's, which it defaults to).
	Location string
	// StorageIntegration names Snowflake's storage integration for the stage.
	StorageIntegration string
	// AutoRefresh sets Snowflake's AUTO_REFRESH (needs cloud event
	// notifications; see docs/warehouses/snowflake.md).
	AutoRefresh bool
	// NotificationIntegration names the Snowflake notification integration
	// that AUTO_REFRESH needs for gs:// (Pub/Sub) and azblob:// (Event Grid)
	// buckets; S3 buckets notify through SQS and need none.
	NotificationIntegration string
}

// location is a bucket URL taken apart.
type location struct {
	scheme   string // s3, gs, azblob, file
	bucket   string
	path     string // local folder for file
	endpoint string // s3 endpoint (host[:port]), when not AWS
	secure   bool
	region   string
	account  string // Azure storage account
	pathURL  bool   // s3 path-style addressing
}

func parseLocation(raw string) (location, error) {
	if !strings.Contains(raw, "://") {
		abs, err := filepath.Abs(raw)
		if err != nil {
			return location{}, err
		}
		return location{scheme: "file", path: abs}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return location{}, fmt.Errorf("bucket URL %q: %w", redact.URL(raw), redact.Error(err))
	}
	q := u.Query()
	l := location{scheme: u.Scheme, bucket: u.Host, region: q.Get("region"), secure: true}
	switch u.Scheme {
	case "file":
		l.path = filepath.FromSlash(u.Path)
	case "s3":
		if ep := q.Get("endpoint"); ep != "" {
			e, err := url.Parse(ep)
			if err != nil || e.Host == "" {
				return l, fmt.Errorf("bucket URL %q: endpoint %q is not a URL", redact.URL(raw), redact.URL(ep))
			}
			l.endpoint, l.secure = e.Host, e.Scheme != "http"
		}
		l.pathURL = q.Get("use_path_style") == "true"
		if l.region == "" {
			l.region = os.Getenv("AWS_REGION")
		}
	case "gs":
	case "azblob":
		l.account = q.Get("storage_account")
		if l.account == "" {
			l.account = os.Getenv("AZURE_STORAGE_ACCOUNT")
		}
	default:
		return l, fmt.Errorf("bucket URL %q: scheme %q has no warehouse equivalent", redact.URL(raw), u.Scheme)
	}
	return l, nil
}

// under joins the prefix and a relative path into a path inside the bucket.
func under(prefix string, parts ...string) string {
	p := strings.Trim(prefix, "/")
	for _, x := range parts {
		if p != "" {
			p += "/"
		}
		p += x
	}
	return p
}

// Write writes the complete, runnable SQL for o to w.
func Write(w io.Writer, o Options) error {
	sql, err := Generate(o)
	if err != nil {
		return err
	}
	_, err = w.Write(sql)
	return err
}

// Generate returns the complete, runnable SQL for o; its errors are all
// about o.
func Generate(o Options) ([]byte, error) {
	g, stmts, err := build(o)
	if err != nil {
		return nil, err
	}
	var w bytes.Buffer
	fmt.Fprintf(&w, "-- sgload views for %s over %s (generated by sgload views; regenerate rather than edit)\n", g.o.Dialect, shownBucket(g.o.Bucket))
	if g.o.Naming != NamingSgload {
		fmt.Fprintf(&w, "-- Naming: %s\n", g.o.Naming)
	}
	fmt.Fprintf(&w, "-- Event types: %s\n\n", strings.Join(g.types, ", "))
	for _, s := range stmts {
		if s.comment != "" {
			for _, line := range strings.Split(s.comment, "\n") {
				fmt.Fprintf(&w, "-- %s\n", line)
			}
		}
		fmt.Fprintf(&w, "%s;\n\n", strings.TrimSpace(s.sql))
	}
	return w.Bytes(), nil
}

// identRE is what sgload accepts as a name it writes into SQL: every name
// it derives (columns, event types, collections) has this shape, and user
// input (schema, integration names) must too. Quoting makes reserved words
// safe; the shape keeps quotes and dots out.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func build(o Options) (*gen, []stmt, error) {
	if o.Schema == "" {
		o.Schema = "sendgrid"
	}
	if o.Naming == "" {
		o.Naming = NamingSgload
	}
	switch o.Naming {
	case NamingSgload, NamingSegment, NamingStitch:
	default:
		return nil, nil, fmt.Errorf("naming %q: use sgload, segment or stitch", o.Naming)
	}
	if !validSchema.MatchString(o.Schema) || (o.Dialect != BigQuery && strings.Contains(o.Schema, "-")) {
		return nil, nil, fmt.Errorf("schema %q: use letters, digits and _ (and one dot for project.dataset or database.schema)", o.Schema)
	}
	if o.StorageIntegration == "" {
		o.StorageIntegration = "sgload_integration"
	}
	for flag, v := range map[string]string{"storage integration": o.StorageIntegration, "notification integration": o.NotificationIntegration} {
		if v != "" && !identRE.MatchString(v) {
			return nil, nil, fmt.Errorf("%s %q: use letters, digits and _", flag, v)
		}
	}
	loc, err := parseLocation(o.Bucket)
	if err != nil {
		return nil, nil, err
	}
	g := &gen{o: o, loc: loc, types: eventTypes(o.EventTypes)}
	switch o.Dialect {
	case DuckDB:
		g.d = duckdb{}
	case BigQuery:
		g.d = bigquery{}
	case Snowflake:
		g.d = snowflake{}
	default:
		return nil, nil, fmt.Errorf("dialect %q: use duckdb, bigquery or snowflake", o.Dialect)
	}
	stmts, err := g.d.preamble(g)
	if err != nil {
		return nil, nil, err
	}
	ev, err := g.events()
	if err != nil {
		return nil, nil, err
	}
	obj, err := g.objects()
	if err != nil {
		return nil, nil, err
	}
	stmts = append(append(stmts, ev...), obj...)
	switch o.Naming {
	case NamingSegment:
		stmts = append(stmts, g.segment()...)
	case NamingStitch:
		stmts = append(stmts, g.stitch()...)
	}
	return g, stmts, nil
}

// collections are the collections to write views for.
func (g *gen) collections() []string {
	if g.o.Collections == nil {
		return schema.CollectionNames()
	}
	var out []string
	for _, c := range g.o.Collections {
		if schema.Collections[c] != nil {
			out = append(out, c)
		}
	}
	return out
}

// objects writes, per collection, every version (<collection>_history, a
// view over the files, <collection>_raw) and the latest state
// (<collection>_latest), plus the sync_snapshots table the latter relies on.
// The history views drop the second copy of a row that a compaction's grace
// leaves in the bucket (its inputs and its output both present): a row is
// one (_node, _sequence), and a copy stays in its dt.
func (g *gen) objects() ([]stmt, error) {
	names := g.collections()
	if len(names) == 0 {
		return nil, nil
	}
	out, err := g.history(schema.Snapshots, schema.Snapshots.Name,
		"Every complete snapshot sync took. A snapshot is listed only once all its rows are in.")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		c := schema.Collections[name]
		hist := name + "_history"
		h, err := g.history(c, hist, fmt.Sprintf("%s: every version of every object, one row per object per sync (%s).", name, c.Doc))
		if err != nil {
			return nil, err
		}
		out = append(out, h...)
		keys := make([]string, len(c.Key))
		for i, k := range c.Key {
			keys[i] = "{h}." + g.d.ident(k)
		}
		mode := "full"
		if c.Mode == schema.Incremental {
			mode = "incremental (deletions show after a sync with --full-refresh)"
		}
		comment := fmt.Sprintf("%s: the latest version of each object still present: rows of the latest complete\nfull snapshot and of the complete incremental ones after it. An object absent from the\nlatest full snapshot is gone. Synced %s.", name, mode)
		since := fmt.Sprintf("\nWHERE {s}.{_sequence} >= COALESCE((SELECT MAX({_sequence}) FROM %s WHERE {collection} = '%s' AND {mode} = 'full'), 0)",
			g.table(schema.Snapshots.Name), name)
		if c.AgesOut {
			comment = fmt.Sprintf("%s: the latest version of each object any complete sync saw. The API forgets\nthem after a while; the bucket keeps them, so absence is not deletion.", name)
			since = g.d.qualify()
		}
		out = append(out, stmt{
			comment: comment,
			sql: g.sql(`CREATE OR REPLACE VIEW %[1]s AS
SELECT {h}.* FROM %[2]s AS {h}
JOIN %[3]s AS {s} ON {s}.{sync_id} = {h}.{_sync_id} AND {s}.{collection} = '%[4]s'%[6]s
QUALIFY ROW_NUMBER() OVER (PARTITION BY %[5]s ORDER BY {h}.{_sequence} DESC) = 1`,
				g.table(name+"_latest"), g.table(hist), g.table(schema.Snapshots.Name), name, strings.Join(keys, ", "), since),
		})
	}
	return out, nil
}

// history writes the table over c's files (name_raw, or <c>_raw for the
// snapshots) and the view of each row once (name).
func (g *gen) history(c *schema.Collection, name, comment string) ([]stmt, error) {
	raw := strings.TrimSuffix(name, "_history") + "_raw"
	out, err := g.d.rawObjects(g, c.Table(), raw)
	if err != nil {
		return nil, err
	}
	out[0].comment = fmt.Sprintf("The files of %s, as they are: during a compaction's grace a row may be in two.", name)
	return append(out, stmt{
		comment: comment,
		sql: g.sql(`CREATE OR REPLACE VIEW %s AS
SELECT %s FROM %s%s
QUALIFY ROW_NUMBER() OVER (PARTITION BY {dt}, {_node}, {_sequence} ORDER BY {_node}) = 1`,
			g.table(name), g.d.rawStar(), g.table(raw), g.d.qualify()),
	}), nil
}

// validSchema allows hyphens in the first part, for BigQuery project ids.
var validSchema = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// shownBucket is the bucket URL as the SQL's comment shows it: redacted,
// and without its query, which there is no need to repeat.
func shownBucket(raw string) string {
	u := redact.URL(raw)
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

func eventTypes(extra []string) []string {
	set := map[string]bool{}
	for _, t := range schema.KnownEventTypes {
		set[t] = true
	}
	for _, t := range extra {
		set[schema.TableName(t)] = true
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

type stmt struct {
	comment string
	sql     string
}

// dialectWriter is what differs between dialects.
type dialectWriter interface {
	preamble(g *gen) ([]stmt, error)  // schema, secrets, stages
	rawEvents(g *gen) ([]stmt, error) // the table or view over every event file
	// rawObjects makes the table of every version of a collection's
	// objects (name is e.g. lists_history).
	rawObjects(g *gen, t *schema.Table, name string) ([]stmt, error)
	typ(k schema.Kind) string         // column type
	ident(name string) string         // quoted identifier
	qualify() string                  // what must precede QUALIFY when there is no WHERE
	starExcept(cols ...string) string // SELECT * without cols (names, unquoted)
	rawStar() string                  // the columns of the raw events table

	// Functions that differ.
	listLen(expr string) string       // the length of a list
	sortedList(expr string) string    // the aggregate list of expr's (non-null) values, sorted
	emptyList(k schema.Kind) string   // an empty list of k
	listJSON(expr string) string      // a list as JSON text
	epochSeconds(expr string) string  // a timestamp as Unix seconds (integer)
	intDiv(expr string, n int) string // integer division
	// unnest is the FROM item that turns the list expr of rel into rows, and
	// the expressions of each item and of its 0-based position.
	unnest(rel, expr string) (from, value, index string)
}

type gen struct {
	o     Options
	loc   location
	d     dialectWriter
	types []string
}

// placeholder is {name}, an identifier the dialect quotes, or {@name}, one
// of localNames.
var placeholder = regexp.MustCompile(`\{(@?)([a-z_][a-z0-9_]*)\}`)

// localNames are the names of the common table expressions of sgload's own
// views. They are written unquoted (node-sql-parser's BigQuery grammar, which
// the tests check the SQL with, takes no quoted CTE name), so none of them
// may be a reserved word in any dialect: TestReservedWords checks them
// against each dialect's list.
var localNames = map[string]bool{"ev": true, "ranked": true, "totals": true, "latest_event": true,
	"latest_delivery": true, "latest_bounce": true, "group_state": true, "group_unsubs": true}

// sql formats format with args, then expands every {name} placeholder into
// the dialect's quoted identifier. Args may hold placeholders too, and
// quoted names; never paths or other text from the user, which could hold
// braces.
func (g *gen) sql(format string, args ...any) string {
	s := format
	if len(args) > 0 {
		s = fmt.Sprintf(format, args...)
	}
	return g.expand(s)
}

// expand expands the {name} placeholders of s.
func (g *gen) expand(s string) string {
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		if m[1] == '@' {
			name := m[2 : len(m)-1]
			if !localNames[name] {
				panic("sqlviews: " + name + " is not in localNames")
			}
			return name
		}
		return g.d.ident(m[1 : len(m)-1])
	})
}

// table is the qualified, quoted name of a table or view in the schema.
func (g *gen) table(name string) string {
	switch g.d.(type) {
	case bigquery:
		return "`" + g.o.Schema + "." + name + "`"
	}
	parts := strings.Split(g.o.Schema, ".")
	for i, p := range parts {
		parts[i] = g.d.ident(p)
	}
	return strings.Join(parts, ".") + "." + g.d.ident(name)
}

// schemaName is the quoted schema (or dataset) name.
func (g *gen) schemaName() string {
	switch g.d.(type) {
	case bigquery:
		return "`" + g.o.Schema + "`"
	}
	parts := strings.Split(g.o.Schema, ".")
	for i, p := range parts {
		parts[i] = g.d.ident(p)
	}
	return strings.Join(parts, ".")
}

func (g *gen) events() ([]stmt, error) {
	d := g.d
	raw := g.table("events_raw")
	ev := g.table("events")
	rawStmts, err := d.rawEvents(g)
	if err != nil {
		return nil, err
	}
	out := rawStmts
	// The loader's rule (schema.DedupeSQL), earliest _sequence kept.
	// Duplicates share their event_type and dt, which lead the window's
	// PARTITION BY so that filters on them still prune partitions.
	out = append(out, stmt{
		comment: "Every event once: the loader's dedupe rule (same type and sg_event_id, or the same\ncontent without one), for installs with several nodes whose flushes cannot see each\nother (a no-op otherwise). Filter on dt to prune partitions.",
		sql: g.sql(`CREATE OR REPLACE VIEW %s AS
SELECT %s FROM %s%s
QUALIFY ROW_NUMBER() OVER (PARTITION BY {event_type}, {dt}, %s ORDER BY {_sequence}, {_node}) = 1`,
			ev, d.rawStar(), raw, d.qualify(), schema.DedupeSQL(d.ident)),
	})
	if g.o.Naming != NamingSegment { // Segment's own per-type views and activity replace these
		for _, t := range g.types {
			out = append(out, stmt{sql: g.sql("CREATE OR REPLACE VIEW %s AS\nSELECT %s FROM %s WHERE {event_type} = '%s'",
				g.table(t), d.starExcept("event_type"), ev, t)})
		}
		out = append(out, g.activity())
	}
	out = append(out, g.messageStatus(), g.recipientStatus())
	return out, nil
}

// activity is sgload's activity view: every event type, the common
// columns, and the Segment Spec name.
func (g *gen) activity() stmt {
	var cases []string
	keys := make([]string, 0, len(schema.SpecEvents))
	for k := range schema.SpecEvents {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cases = append(cases, fmt.Sprintf("    WHEN '%s' THEN '%s'", k, schema.SpecEvents[k]))
	}
	cols := make([]string, len(schema.ActivityColumns))
	for i, c := range schema.ActivityColumns {
		cols[i] = "  " + g.d.ident(c)
	}
	return stmt{
		comment: "Every event type in one view, Segment's activity table: segment_event is the Segment Spec\nname where one exists (NULL otherwise). New event types appear here without new SQL.",
		sql: g.sql("CREATE OR REPLACE VIEW %s AS\nSELECT\n  {event_type},\n  CASE {event_type}\n%s\n  END AS {segment_event},\n%s,\n  {dt}\nFROM %s",
			g.table("activity"), strings.Join(cases, "\n"), strings.Join(cols, ",\n"), g.table("events")),
	}
}

// columnDefs returns the columns as "name TYPE" lines.
func columnDefs(d dialectWriter, cols []schema.Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = fmt.Sprintf("  %s %s", d.ident(c.Name), d.typ(c.Kind))
	}
	return out
}

package loader

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/jsonarray"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool/spooltest"
)

// TestColumnsAgreeWithRaw holds flush's typed columns to what DuckDB's JSON
// functions read from _raw, duplicates included: for a member sent twice,
// both take the first (DuckDB is asked, not assumed), even when the first
// is null or malformed. Events flush cannot load (too deep, not UTF-8;
// written by a serve from before it refused them) are quarantined with a
// short log line, and the files stay readable.
func TestColumnsAgreeWithRaw(t *testing.T) {
	deep := strings.Repeat(`{"a":`, jsonarray.MaxDepth) + "1" + strings.Repeat("}", jsonarray.MaxDepth)
	crafted := [][]byte{
		[]byte(`{"event":null,"sg_event_id":"null-event","timestamp":1767225600}`),
		[]byte(`{"event":"open","event":"click","sg_event_id":"two-events","timestamp":1767225600}`),
		[]byte(`{"event":"bounce","sg_event_id":"dups","email":null,"email":"second@example.com","attempt":"1","attempt":"2",` +
			`"tls":1,"tls":0,"timestamp":1767225600,"timestamp":1,"category":"a","category":["b"],"pool":{"id":1},"pool":{"name":"p2"},` +
			`"url_offset":{"index":1,"index":2,"type":"html"},"zzz":"first","zzz":"second","status":{"bad":1},"status":"5.0.0",` +
			`"sg_machine_open":"maybe","sg_machine_open":true}`),
		[]byte(`{"event":"open","sg_event_id":"too-deep","x":` + deep + `}`),
		[]byte("{\"event\":\"open\",\"sg_event_id\":\"not-utf8\",\"email\":\"a\xffb\"}"),
	}
	lines := append(spooltest.Lines(t, "../testdata/events/sample-2000.ndjson", "../testdata/events/drift.ndjson"), crafted...)
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	fillSpool(t, root, lines, 97, 1<<20)
	var logs bytes.Buffer
	opts := flushOpts(root, b, "p")
	opts.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	sum, err := Flush(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Quarantined != 2 {
		t.Errorf("quarantined %d events, want 2 (too deep, not UTF-8)", sum.Quarantined)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if len(line) > 1000 {
			t.Errorf("log line of %d bytes: %.200s...", len(line), line)
		}
	}

	db := duckcheck.Open(t)
	src := fmt.Sprintf("read_parquet('%s', hive_partitioning = true)", filepath.Join(b.Dir, "p", "events", "*", "*", "*.parquet"))
	duckcheck.Exec(t, db, "CREATE VIEW ev AS SELECT * FROM "+src)
	one := func(q string) []any {
		t.Helper()
		rows := duckcheck.Rows(t, db, q)
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows", q, len(rows))
		}
		return rows[0]
	}
	// "event": null is no event type: table unknown; two "event" members:
	// the first decides the table and the column.
	if got := one(`SELECT event_type, event FROM ev WHERE sg_event_id = 'null-event'`); got[0] != "unknown" || got[1] != nil {
		t.Errorf(`"event": null: table %v, event %v; want unknown, null`, got[0], got[1])
	}
	if got := one(`SELECT event_type, event, json_extract_string(_raw, '$.event') FROM ev WHERE sg_event_id = 'two-events'`); got[0] != "open" || got[1] != "open" || got[2] != "open" {
		t.Errorf("two event members: table %v, event %v, DuckDB's _raw %v; want open everywhere", got[0], got[1], got[2])
	}
	// DuckDB takes the first member, null or not.
	if got := one(`SELECT json_extract_string('{"a":null,"a":"x"}', '$.a') IS NULL, json_extract_string('{"a":"x","a":"y"}', '$.a')`); got[0] != true || got[1] != "x" {
		t.Fatalf("DuckDB's JSON functions no longer take the first of duplicate members: %v", got)
	}
	// Every typed column equals DuckDB's reading of _raw, on every row.
	checks := map[string]string{
		"event":            `event IS NOT DISTINCT FROM json_extract_string(_raw, '$.event')`,
		"event_type":       `event_type = CASE WHEN json_extract_string(_raw, '$.event') IS NULL THEN 'unknown' ELSE event_type END`,
		"email":            `email IS NOT DISTINCT FROM json_extract_string(_raw, '$.email')`,
		"sg_event_id":      `sg_event_id IS NOT DISTINCT FROM NULLIF(json_extract_string(_raw, '$.sg_event_id'), '')`,
		"attempt":          `attempt IS NOT DISTINCT FROM TRY_CAST(json_extract_string(_raw, '$.attempt') AS BIGINT)`,
		"tls":              `tls IS NOT DISTINCT FROM CASE WHEN lower(json_extract_string(_raw, '$.tls')) IN ('0', '1', 'true', 'false') THEN json_extract_string(_raw, '$.tls')::BOOLEAN END`,
		"timestamp":        `epoch(timestamp) IS NOT DISTINCT FROM CASE WHEN TRY_CAST(json_extract_string(_raw, '$.timestamp') AS DOUBLE) < 1e11 THEN TRY_CAST(json_extract_string(_raw, '$.timestamp') AS DOUBLE) ELSE epoch(timestamp) END`,
		"category":         `category IS NOT DISTINCT FROM CASE json_type(_raw, '$.category') WHEN 'VARCHAR' THEN [json_extract_string(_raw, '$.category')] WHEN 'ARRAY' THEN json_extract_string(_raw, '$.category[*]') END`,
		"pool_id":          `pool_id IS NOT DISTINCT FROM TRY_CAST(json_extract_string(_raw, '$.pool.id') AS BIGINT)`,
		"pool_name":        `pool_name IS NOT DISTINCT FROM json_extract_string(_raw, '$.pool.name')`,
		"url_offset_index": `url_offset_index IS NOT DISTINCT FROM TRY_CAST(json_extract_string(_raw, '$.url_offset.index') AS BIGINT)`,
		"status":           `status IS NOT DISTINCT FROM CASE WHEN json_type(_raw, '$.status') IN ('OBJECT', 'ARRAY') THEN NULL ELSE json_extract_string(_raw, '$.status') END`,
		"sg_machine_open":  `sg_machine_open IS NOT DISTINCT FROM TRY_CAST(json_extract_string(_raw, '$.sg_machine_open') AS BOOLEAN)`,
		"custom_args.zzz":  `json_extract_string(custom_args, '$.zzz') IS NOT DISTINCT FROM json_extract_string(_raw, '$.zzz')`,
	}
	for col, cond := range checks {
		if n := duckcheck.Int(t, db, "SELECT count(*) FROM ev WHERE NOT ("+cond+")"); n != 0 {
			t.Errorf("%s: %d rows where the column and DuckDB's reading of _raw differ: %v", col, n, duckcheck.Rows(t, db, "SELECT _raw FROM ev WHERE NOT ("+cond+") LIMIT 2"))
		}
	}
	if n := duckcheck.Int(t, db, "SELECT count(*) FROM ev"); n != expect(t, lines[:len(lines)-2]).rows {
		t.Errorf("%d rows, want %d", n, expect(t, lines[:len(lines)-2]).rows)
	}
	// The crafted duplicates, spelled out.
	got := one(`SELECT email, attempt, tls, category, pool_id, pool_name, url_offset_index, status, len(_errors), custom_args, sg_machine_open FROM ev WHERE sg_event_id = 'dups'`)
	want := []any{nil, int64(1), true, []any{"a"}, int64(1), nil, int64(1), nil, uint64(2), `{"zzz":"first"}`, nil}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("duplicated members: got %v, want %v", got, want)
	}
	_ = schema.EventColumns // the columns checked above are the schema's
}

package schema

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sgload/sgload/spool/spooltest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./schema -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s is stale (-want +got); if the change is right, run go test ./schema -update:\n%s", path, diff)
	}
}

// rowJSON renders row r of b as JSON: every non-null column, in table order.
func rowJSON(b *Batch, r int) []byte {
	var buf bytes.Buffer
	buf.WriteString("{")
	n := 0
	for i, c := range b.Table.Columns {
		col := b.Column(i)
		if !col.Valid[r] {
			continue
		}
		var v any
		switch c.Kind {
		case String:
			v = string(col.StringAt(r))
		case Int64:
			v = col.Ints[r]
		case Timestamp:
			v = time.UnixMicro(col.Ints[r]).UTC().Format(time.RFC3339Nano)
		case Bool:
			v = col.Bools[r]
		case StringList:
			items := []string{}
			for _, it := range col.ListAt(r) {
				items = append(items, string(it))
			}
			v = items
		}
		if n > 0 {
			buf.WriteString(",")
		}
		k, _ := json.Marshal(c.Name)
		val, _ := json.Marshal(v)
		fmt.Fprintf(&buf, "%s:%s", k, val)
		n++
	}
	buf.WriteString("}\n")
	return buf.Bytes()
}

// TestEventRowsGolden maps the drift payloads (every type drift SendGrid is
// known for, unknown keys and types, missing fields) and a slice of the
// realistic sample onto rows, and compares them with the golden file.
func TestEventRowsGolden(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"../testdata/events/drift.ndjson", "../testdata/schema/drift.rows.golden"},
		{"../testdata/events/sample-2000.ndjson", "../testdata/schema/sample-first-40.rows.golden"},
	} {
		lines := spooltest.Lines(t, tc.in)
		if len(lines) > 40 {
			lines = lines[:40]
		}
		m := NewEventMapper()
		var out bytes.Buffer
		for i, raw := range lines {
			e, err := m.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			b := NewBatch(EventTable(e.Table))
			m.Append(b, e, Meta{Sequence: 1000 + int64(i), ReceivedAt: 1767225600_000000, Node: "golden"})
			fmt.Fprintf(&out, "# line %d -> table %s\n", i+1, e.Table)
			out.Write(rowJSON(b, 0))
		}
		golden(t, tc.out, out.Bytes())
	}
}

func TestCoercion(t *testing.T) {
	var m *EventMapper
	row := func(raw string) map[string]any {
		t.Helper()
		m = NewEventMapper() // a fresh one per row: a row must not depend on the rows before it
		e, err := m.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		b := NewBatch(EventTable(e.Table))
		m.Append(b, e, Meta{Sequence: 1, ReceivedAt: 1, Node: "n"})
		var got map[string]any
		if err := json.Unmarshal(rowJSON(b, 0), &got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	tests := []struct {
		name, raw, col string
		want           any // nil: column is null
	}{
		{"category string", `{"category":"a"}`, "category", []any{"a"}},
		{"category array", `{"category":["a","b"]}`, "category", []any{"a", "b"}},
		{"category empty", `{"category":[]}`, "category", []any{}},
		{"category null", `{"category":null}`, "category", nil},
		{"tls int", `{"tls":1}`, "tls", true},
		{"tls string", `{"tls":"0"}`, "tls", false},
		{"tls bad", `{"tls":"maybe"}`, "tls", nil},
		{"cert_err bool", `{"cert_err":true}`, "cert_err", true},
		{"attempt string", `{"attempt":"5"}`, "attempt", float64(5)},
		{"asm_group_id string", `{"asm_group_id":"42"}`, "asm_group_id", float64(42)},
		{"pool id string", `{"pool":{"id":"210","name":"p"}}`, "pool_id", float64(210)},
		{"timestamp seconds", `{"timestamp":1513299569}`, "timestamp", "2017-12-15T00:59:29Z"},
		{"timestamp string", `{"timestamp":"1513299569"}`, "timestamp", "2017-12-15T00:59:29Z"},
		{"timestamp ms", `{"timestamp":1591726752372}`, "timestamp", "2020-06-09T18:19:12.372Z"},
		{"timestamp fraction", `{"timestamp":1513299569.25}`, "timestamp", "2017-12-15T00:59:29.25Z"},
		{"send_at zero is unset", `{"send_at":0}`, "send_at", nil},
		{"status number kept as text", `{"status":500}`, "status", "500"},
		{"smtp-id renamed", `{"smtp-id":"<x@y>"}`, "smtp_id", "<x@y>"},
		{"unknown keys to custom_args", `{"userid":"1","n":{"a":[1]},"q\"k":2}`, "custom_args", `{"userid":"1","n":{"a":[1]},"q\"k":2}`},
		{"raw kept exactly", `{"a" : 1 ,"event":"open"}`, "_raw", `{"a" : 1 ,"event":"open"}`},
		{"clean row has empty _errors", `{"event":"open"}`, "_errors", []any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := row(tc.raw)[tc.col]
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.col, diff)
			}
		})
	}
	if errs := row(`{"tls":"maybe","attempt":"five"}`)["_errors"].([]any); len(errs) != 2 {
		t.Errorf("_errors = %v, want one entry per bad value", errs)
	}
}

func TestTableName(t *testing.T) {
	for in, want := range map[string]string{
		"open": "open", "Processed": "processed", "group_unsubscribe": "group_unsubscribe",
		"brand new-event!": "brand_new_event", "": "unknown", "___": "unknown", "Ünïcode": "n_code",
	} {
		if got := TableName(in); got != want {
			t.Errorf("TableName(%q) = %q, want %q", in, got, want)
		}
	}
}

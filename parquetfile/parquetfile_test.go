package parquetfile

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestParquetSchemaGolden pins the Parquet schema of the event tables: a
// change here changes what every warehouse sees.
func TestParquetSchemaGolden(t *testing.T) {
	got := ParquetSchema(schema.EventTable("open")).String() + "\n"
	path := "../testdata/schema/event.parquet-schema.golden"
	if *update {
		os.WriteFile(path, []byte(got), 0o644)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./parquetfile -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s is stale (-want +got); run go test ./parquetfile -update if the change is right:\n%s", path, diff)
	}
}

// TestWritersReadBackInDuckDB writes the drift payloads with every writer
// and has DuckDB read them: types as declared, every column present (the
// all-null ones too), values as coerced.
func TestWritersReadBackInDuckDB(t *testing.T) {
	batches := loadBatches(t, "../testdata/events/drift.ndjson", 1000)
	var rows int
	for _, b := range batches {
		rows += b.Len()
	}
	dir := t.TempDir()
	writers := testWriters(t)
	for _, tw := range writers {
		for i, b := range batches {
			f, err := os.Create(filepath.Join(dir, tw.name+"-"+b.Table.Name+"-"+string(rune('a'+i))+".parquet"))
			if err != nil {
				t.Fatal(err)
			}
			w := tw.open(f, b.Table)
			if err := w.WriteRowGroup(b); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	db := duckcheck.Open(t)
	for _, tw := range writers {
		t.Run(tw.name, func(t *testing.T) {
			src := "read_parquet('" + filepath.Join(dir, tw.name+"-*.parquet") + "')"
			if n := duckcheck.Int(t, db, "SELECT count(*) FROM "+src); n != int64(rows) {
				t.Fatalf("DuckDB reads %d rows, wrote %d", n, rows)
			}
			cols := duckcheck.Rows(t, db, "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "+src+")")
			types := map[string]string{}
			for _, c := range cols {
				types[c[0].(string)] = c[1].(string)
			}
			for _, c := range schema.EventColumns() {
				want := map[schema.Kind]string{schema.String: "VARCHAR", schema.Int64: "BIGINT", schema.Bool: "BOOLEAN",
					schema.Timestamp: "TIMESTAMP WITH TIME ZONE", schema.StringList: "VARCHAR[]"}[c.Kind]
				if got := types[c.Name]; got != want {
					t.Errorf("column %s: DuckDB type %q, want %q", c.Name, got, want)
				}
			}
			check := func(q string, want any) {
				t.Helper()
				got := duckcheck.Rows(t, db, q)
				if len(got) != 1 || len(got[0]) != 1 {
					t.Fatalf("%s: %v", q, got)
				}
				if diff := cmp.Diff(want, got[0][0]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", q, diff)
				}
			}
			check("SELECT list_sort(category)::VARCHAR FROM "+src+" WHERE sg_event_id='drift-02'", "[a, b]")
			check("SELECT attempt FROM "+src+" WHERE sg_event_id='drift-03'", int64(5))
			check("SELECT epoch_ms(timestamp) FROM "+src+" WHERE sg_event_id='drift-03'", int64(1767225602000))
			check("SELECT tls FROM "+src+" WHERE sg_event_id='drift-02'", true)
			check("SELECT len(category) FROM "+src+" WHERE sg_event_id='drift-03'", int64(0))
			check("SELECT category IS NULL FROM "+src+" WHERE sg_event_id='drift-04'", true)
			check("SELECT len(_errors) FROM "+src+" WHERE sg_event_id='drift-06'", int64(2))
			check("SELECT json_extract_string(custom_args, '$.userid') FROM "+src+" WHERE sg_event_id='drift-05'", "1123")
			check("SELECT count(*) FROM "+src+" WHERE reseller_id IS NOT NULL", int64(0))
			raw := duckcheck.Rows(t, db, "SELECT _raw FROM "+src+" WHERE sg_event_id='drift-06'")[0][0].(string)
			if !strings.Contains(raw, `"url":"https://example.com/?a=1&b=<2>"`) {
				t.Errorf("_raw not byte-exact: %s", raw)
			}
		})
	}
}

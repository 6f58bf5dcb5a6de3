package sqlviews

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/objectsync"
	"github.com/sgload/sgload/sendgrid"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// segmentAPI answers the legacy Marketing Campaigns calls Segment's
// collections come from.
func segmentAPI(t *testing.T) *sendgrid.Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch r.URL.Path {
		case "/v3/contactdb/lists":
			json.NewEncoder(w).Encode(map[string]any{"lists": []any{
				map[string]any{"id": 1, "name": "customers", "recipient_count": 4},
				map[string]any{"id": 2, "name": "trial", "recipient_count": 1},
			}})
		case "/v3/contactdb/segments":
			json.NewEncoder(w).Encode(map[string]any{"segments": []any{map[string]any{"id": 7, "name": "gmail", "list_id": 1, "recipient_count": 2,
				"conditions": []any{map[string]string{"field": "email", "value": "@gmail.com", "operator": "contains"}}}}})
		case "/v3/contactdb/recipients":
			if page, _ := strconv.Atoi(q.Get("page")); page > 1 {
				w.WriteHeader(404)
				return
			}
			var rs []any
			for i := 0; i < 5; i++ {
				rs = append(rs, map[string]any{"id": fmt.Sprintf("cjA%d", i), "email": fmt.Sprintf("r%d@example.com", i), "created_at": 1500000000 + i, "last_opened": 1700000000 + i})
			}
			json.NewEncoder(w).Encode(map[string]any{"recipients": rs})
		case "/v3/campaigns":
			json.NewEncoder(w).Encode(map[string]any{"result": []any{
				map[string]any{"id": 900, "title": "spring", "list_ids": []int{1, 2}, "categories": []string{"spring"}, "status": "Sent"},
				map[string]any{"id": 901, "title": "summer", "status": "Draft"},
			}})
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	api, err := sendgrid.New(srv.URL, "SG.key", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	api.MaxRetries = 0
	return api
}

// docQueries returns the SQL blocks of a docs page.
func docQueries(t *testing.T, page string) []string {
	doc, err := os.ReadFile("../docs/warehouses/" + page)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("%s has no SQL", page)
	}
	return out
}

// duckDB is a DuckDB database with the helpers these tests use.
type duckDB struct {
	t  *testing.T
	db *sql.DB
}

func (d *duckDB) int(q string) int64 { return duckcheck.Int(d.t, d.db, q) }

// types is a view's column types, by name.
func (d *duckDB) types(view string) map[string]string {
	out := map[string]string{}
	for _, r := range duckcheck.Rows(d.t, d.db, fmt.Sprintf(`DESCRIBE sendgrid."%s"`, view)) {
		out[r[0].(string)] = r[1].(string)
	}
	return out
}

// TestNamingViewsInDuckDB flushes the sample events and a sync of
// Segment's four object collections, writes the SQL with --naming segment
// and --naming stitch, runs it in DuckDB, and checks the tables, their
// columns and types, against the events; then it runs the saved queries
// docs/warehouses/segment-compat.md and stitch-compat.md show, as written.
func TestNamingViewsInDuckDB(t *testing.T) {
	b := testbucket.Open(t, "file")
	lines := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson", "../testdata/events/drift.ndjson")
	root := t.TempDir()
	spooltest.Fill(t, root, lines, spooltest.Options{Node: "nm"})
	sum, err := objectsync.Run(context.Background(), objectsync.Options{Spool: spool.Dir{Root: root}, Node: "nm", Client: segmentAPI(t),
		Collections: segmentObjects})
	if err != nil || len(sum.Failed) != 0 {
		t.Fatalf("sync: %v %+v", err, sum)
	}
	if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket}); err != nil {
		t.Fatal(err)
	}
	types, err := layout.EventTypes(context.Background(), b.Bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	colls, err := layout.ObjectCollections(context.Background(), b.Bucket, "")
	if err != nil || len(colls) != 4 {
		t.Fatalf("collections %v, %v", colls, err)
	}
	var or spooltest.Oracle
	distinct := map[string]bool{}
	byType := map[string]int64{}
	categories := int64(0)
	for _, l := range lines {
		k := or.Key(t, l)
		if distinct[k] {
			continue
		}
		distinct[k] = true
		byType[or.Table(t, l)]++
		var ev struct {
			Category any `json:"category"`
		}
		json.Unmarshal(l, &ev)
		switch c := ev.Category.(type) {
		case string:
			categories++
		case []any:
			categories += int64(len(c))
		}
	}

	open := func(n Naming) *duckDB {
		var sql bytes.Buffer
		if err := Write(&sql, Options{Dialect: DuckDB, Bucket: b.Dir, Naming: n, EventTypes: types, Collections: colls}); err != nil {
			t.Fatal(err)
		}
		db := &duckDB{t: t, db: duckcheck.Open(t)}
		duckcheck.Exec(t, db.db, sql.String())
		return db
	}

	t.Run("segment", func(t *testing.T) {
		db := open(NamingSegment)
		db.t = t
		if n := db.int("SELECT count(*) FROM sendgrid.activity"); n != int64(len(distinct)) {
			t.Errorf("activity: %d rows, want %d", n, len(distinct))
		}
		for typ, table := range map[string]string{"open": "_open", "spamreport": "spam_report", "click": "click", "bounce": "bounce",
			"delivered": "delivered", "processed": "processed", "dropped": "dropped", "deferred": "deferred", "unsubscribe": "unsubscribe"} {
			if n := db.int(fmt.Sprintf(`SELECT count(*) FROM sendgrid."%s"`, table)); n != byType[typ] || n == 0 {
				t.Errorf("%s: %d rows, want the %d distinct %s events", table, n, byType[typ], typ)
			}
		}
		// Segment's columns, with the types its tables have.
		want := map[string]string{"id": "VARCHAR", "received_at": "TIMESTAMP WITH TIME ZONE", "uuid_ts": "TIMESTAMP WITH TIME ZONE",
			"event": "VARCHAR", "email": "VARCHAR", "timestamp": "BIGINT", "category": "VARCHAR", "sg_event_id": "VARCHAR",
			"sg_message_id": "VARCHAR", "smtp_id": "VARCHAR", "tls": "INTEGER", "attempt": "VARCHAR", "url": "VARCHAR",
			"useragent": "VARCHAR", "marketing_campaign_name": "VARCHAR", "sg_template_name": "VARCHAR", "from": "VARCHAR"}
		for _, table := range []string{"activity", "_open", "click"} {
			got := db.types(table)
			for col, typ := range want {
				if got[col] != typ {
					t.Errorf("%s.%s is %q, want %s", table, col, got[col], typ)
				}
			}
		}
		if n := db.int(`SELECT count(*) FROM sendgrid._open o JOIN sendgrid.events e ON e.sg_event_id = o.id AND e.event_type = 'open'
			WHERE o.timestamp <> floor(epoch(e.timestamp)) OR o.received_at <> e._received_at`); n != 0 {
			t.Errorf("%d _open rows whose timestamp is not the event's Unix seconds", n)
		}
		if n := db.int(`SELECT count(*) FROM sendgrid.processed WHERE sg_event_id = 'drift-01' AND category = '["cat facts"]'`); n != 1 {
			t.Errorf("a category sent as a string is not JSON text in processed (%d rows)", n)
		}
		for table, rows := range map[string]int64{"lists": 2, "segments": 1, "recipients": 5, "campaigns": 2} {
			if n := db.int(fmt.Sprintf("SELECT count(*) FROM sendgrid.%s", table)); n != rows {
				t.Errorf("%s: %d rows, want %d", table, n, rows)
			}
			if got := db.types(table); got["id"] != "VARCHAR" || got["received_at"] == "" || got["uuid_ts"] == "" {
				t.Errorf("%s columns %v: want id (text), received_at, uuid_ts", table, got)
			}
		}
		if n := db.int(`SELECT count(*) FROM sendgrid.campaigns WHERE id = '900' AND list_ids = '["1","2"]'`); n != 1 {
			t.Error("campaigns.list_ids is not JSON text")
		}
		if n := db.int(`SELECT count(*) FROM duckdb_views() WHERE schema_name = 'sendgrid' AND view_name IN ('open', 'spamreport')`); n != 0 {
			t.Error("sgload's own open/spamreport views are written beside Segment's")
		}
		for i, q := range docQueries(t, "segment-compat.md") {
			if rows := duckcheck.Rows(t, db.db, q); len(rows) == 0 {
				t.Errorf("segment-compat.md query %d returns nothing:\n%s", i+1, q)
			}
		}
	})

	t.Run("stitch", func(t *testing.T) {
		db := open(NamingStitch)
		db.t = t
		if n := db.int("SELECT count(*) FROM sendgrid.data"); n != int64(len(distinct)) {
			t.Errorf("data: %d rows, want %d", n, len(distinct))
		}
		got := db.types("data")
		for col, typ := range map[string]string{"event": "VARCHAR", "email": "VARCHAR", "timestamp": "BIGINT", "_sdc_sequence": "BIGINT",
			"_sdc_received_at": "TIMESTAMP WITH TIME ZONE", "_sdc_batched_at": "TIMESTAMP WITH TIME ZONE", "asm_group_id": "BIGINT",
			"attempt": "VARCHAR", "cert_err": "INTEGER", "ip": "VARCHAR", "reason": "VARCHAR", "response": "VARCHAR", "sg_event_id": "VARCHAR",
			"sg_message_id": "VARCHAR", "smtp_id": "VARCHAR", "status": "VARCHAR", "tls": "INTEGER", "type": "VARCHAR", "url": "VARCHAR",
			"url_offset_index": "BIGINT", "url_offset_type": "VARCHAR", "useragent": "VARCHAR"} {
			if got[col] != typ {
				t.Errorf("data.%s is %q, want %s", col, got[col], typ)
			}
		}
		// _sdc_sequence is Unix milliseconds at receipt.
		if n := db.int("SELECT count(*) FROM sendgrid.data WHERE abs(_sdc_sequence - epoch_ms(_sdc_received_at)) > 1000"); n != 0 {
			t.Errorf("%d rows whose _sdc_sequence is not the receipt time in ms", n)
		}
		if n := db.int("SELECT count(*) FROM sendgrid.data__category"); n != categories {
			t.Errorf("data__category: %d rows, want %d category items", n, categories)
		}
		if n := db.int(`SELECT count(*) FROM sendgrid.data__category c WHERE _sdc_level_0_id = 1 AND NOT EXISTS (
			SELECT 1 FROM sendgrid.data__category c0 WHERE c0._sdc_level_0_id = 0 AND c0._sdc_sequence = c._sdc_sequence)`); n != 0 {
			t.Errorf("%d second items without a first", n)
		}
		for i, q := range docQueries(t, "stitch-compat.md") {
			rows := duckcheck.Rows(t, db.db, q)
			if len(rows) == 0 || int64(len(rows)) > int64(len(distinct)) {
				t.Errorf("stitch-compat.md query %d returns %d rows:\n%s", i+1, len(rows), q)
			}
		}
	})
}

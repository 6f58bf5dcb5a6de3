package sqlviews

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/objectsync"
	"github.com/sgload/sgload/rewrite"
	"github.com/sgload/sgload/sendgrid"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenOptions are fixed inputs for the golden files, one per dialect.
var goldenOptions = map[Dialect]Options{
	DuckDB:    {Bucket: "s3://acme-sendgrid?region=us-east-1", Prefix: "sendgrid", EventTypes: []string{"brand_new_event"}},
	BigQuery:  {Bucket: "gs://acme-sendgrid", Prefix: "sendgrid", Schema: "acme-project.sendgrid", EventTypes: []string{"brand_new_event"}},
	Snowflake: {Bucket: "s3://acme-sendgrid?region=us-east-1", Prefix: "sendgrid", Schema: "analytics.sendgrid", EventTypes: []string{"brand_new_event"}},
}

// goldenCases are the golden files: every dialect in every naming, and
// the variants whose SQL differs by more than a name: BigQuery Omni over
// S3 (the dataset in the connection's location) and Snowflake over GCS
// with automatic refresh (the notification integration).
func goldenCases() map[string]Options {
	out := map[string]Options{}
	for _, d := range Dialects {
		for _, n := range Namings {
			o := goldenOptions[d]
			o.Dialect, o.Naming = d, n
			name := string(d)
			if n != NamingSgload {
				name += "-" + string(n)
			}
			out[name] = o
		}
	}
	out["bigquery-omni"] = Options{Dialect: BigQuery, Bucket: "s3://acme-sendgrid", Prefix: "sendgrid", Schema: "acme-project.sendgrid",
		Connection: "acme-project.aws-us-east-1.sgload_s3"}
	out["snowflake-gcs-auto-refresh"] = Options{Dialect: Snowflake, Bucket: "gs://acme-sendgrid", Prefix: "sendgrid", Schema: "analytics.sendgrid",
		AutoRefresh: true, NotificationIntegration: "sgload_gcs_events", Collections: []string{"lists"}}
	return out
}

// TestGolden pins the SQL of every case; a stale file fails make test.
func TestGolden(t *testing.T) {
	for name, o := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, o); err != nil {
				t.Fatal(err)
			}
			path := "../testdata/sqlviews/" + name + ".sql"
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./sqlviews -update)", err)
			}
			if diff := cmp.Diff(string(want), buf.String()); diff != "" {
				t.Errorf("%s is stale (-want +got); run go test ./sqlviews -update if the change is right:\n%s", path, diff)
			}
		})
	}
	// No golden file is left over from a case that is gone.
	files, _ := filepath.Glob("../testdata/sqlviews/*.sql")
	cases := goldenCases()
	for _, f := range files {
		if _, ok := cases[strings.TrimSuffix(filepath.Base(f), ".sql")]; !ok {
			t.Errorf("%s belongs to no golden case", f)
		}
	}
}

func TestErrors(t *testing.T) {
	for name, o := range map[string]Options{
		"unknown dialect":          {Dialect: "oracle", Bucket: "gs://b"},
		"bigquery over a folder":   {Dialect: BigQuery, Bucket: "/tmp/b"},
		"bigquery over s3":         {Dialect: BigQuery, Bucket: "s3://b"},
		"snowflake over a folder":  {Dialect: Snowflake, Bucket: "/tmp/b"},
		"bad schema":               {Dialect: DuckDB, Bucket: "/tmp/b", Schema: "a;drop"},
		"unsupported bucket":       {Dialect: DuckDB, Bucket: "ftp://x"},
		"azure without an account": {Dialect: Snowflake, Bucket: "azblob://c"},
		"unknown naming":           {Dialect: DuckDB, Bucket: "/tmp/b", Naming: "fivetran"},
		"storage integration":      {Dialect: Snowflake, Bucket: "s3://b", StorageIntegration: "a b"},
		"bigquery connection":      {Dialect: BigQuery, Bucket: "s3://b", Connection: "p.l.c`"},
	} {
		t.Setenv("AZURE_STORAGE_ACCOUNT", "")
		if err := Write(&bytes.Buffer{}, o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestThirdPartyParser checks the BigQuery and Snowflake SQL with
// node-sql-parser, which has modes for both. What it can check: every
// CREATE VIEW statement whole; BigQuery's external table column list (as a
// CREATE TABLE); each Snowflake column expression (as a SELECT). What it
// cannot, because node-sql-parser 5.4.0 has no grammar for them: CREATE
// EXTERNAL TABLE's OPTIONS and PARTITION COLUMNS clauses, CREATE STAGE,
// ALTER EXTERNAL TABLE ... REFRESH, BigQuery's CREATE SCHEMA, and in
// Snowflake the ::ARRAY cast and METADATA$FILENAME; those are pinned by the
// golden files instead.
func TestThirdPartyParser(t *testing.T) {
	nodePath := os.Getenv("SGLOAD_TEST_NODE_PATH")
	if nodePath == "" {
		if os.Getenv("SGLOAD_REQUIRE_EMULATORS") != "" {
			t.Fatal("SGLOAD_TEST_NODE_PATH is not set: run make test")
		}
		t.Skip("node-sql-parser not installed (run make test)")
	}
	type check struct {
		Dialect string `json:"dialect"`
		SQL     string `json:"sql"`
		what    string
	}
	var checks []check
	for _, d := range []Dialect{BigQuery, Snowflake} {
		for _, n := range Namings {
			// Every reserved word of every dialect as an event type: the quoted
			// names must parse too.
			o := identifierOptions(t, d, n)
			if n != NamingSgload { // the reserved-word views once per dialect are enough
				o.EventTypes = goldenOptions[d].EventTypes
			}
			_, stmts, err := build(o)
			if err != nil {
				t.Fatal(err)
			}
			views := 0
			for _, s := range stmts {
				sql := strings.TrimSpace(s.sql)
				switch {
				case strings.HasPrefix(sql, "CREATE OR REPLACE VIEW"):
					checks = append(checks, check{string(d), sql, "view"})
					views++
				case d == BigQuery && strings.HasPrefix(sql, "CREATE OR REPLACE EXTERNAL TABLE"):
					cols := sql[strings.Index(sql, "(") : strings.Index(sql, "\n)")+2]
					checks = append(checks, check{string(d), "CREATE TABLE t " + cols, "external table columns"})
				case d == Snowflake && strings.HasPrefix(sql, "CREATE OR REPLACE EXTERNAL TABLE"):
					for _, m := range regexp.MustCompile(`(?m)^  ("\w+") [^\n]*? AS \((.*)\),?$`).FindAllStringSubmatch(sql, -1) {
						if strings.Contains(m[2], "::ARRAY") || strings.Contains(m[2], "METADATA$FILENAME") {
							continue // beyond node-sql-parser's Snowflake grammar (see above)
						}
						checks = append(checks, check{string(d), fmt.Sprintf("SELECT %s AS %s FROM t", m[2], m[1]), "column " + m[1]})
					}
				}
			}
			if views < 14 {
				t.Fatalf("%s: only %d views found to check", d, views)
			}
		}
	}
	in, _ := json.Marshal(checks)
	cmd := exec.Command("node", "../scripts/sqlcheck.js")
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodePath)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node sqlcheck.js: %v", err)
	}
	var res []struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(checks) {
		t.Fatalf("sqlcheck output %q: %v", out, err)
	}
	for i, r := range res {
		if !r.OK {
			t.Errorf("%s %s does not parse: %s\n%s", checks[i].Dialect, checks[i].what, r.Error, checks[i].SQL)
		}
	}
	t.Logf("node-sql-parser accepted %d statements and expressions", len(checks))
}

// TestDuckDBViewsOverARealFlush flushes two nodes into one bucket — their
// spools overlap, as when SendGrid retries a batch against another node —
// runs the generated DuckDB SQL for real, and checks the views row by row
// against the input: dedupe across nodes, the union, Segment names, new
// event types.
func TestDuckDBViewsOverARealFlush(t *testing.T) {
	b := testbucket.Open(t, "file")
	sample := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")
	drift := spooltest.Lines(t, "../testdata/events/drift.ndjson")
	nodeA := append(append([][]byte{}, sample[:1500]...), drift...)
	nodeB := sample[1000:] // 500 events node A has too
	for node, evs := range map[string][][]byte{"node-a": nodeA, "node-b": nodeB} {
		root := t.TempDir()
		spooltest.Fill(t, root, evs, spooltest.Options{Node: node})
		if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: "sg"}); err != nil {
			t.Fatal(err)
		}
	}
	// The oracle: distinct events by the dedupe rule, computed without sgload.
	var or spooltest.Oracle
	want := map[string]bool{}
	wantByType := map[string]int64{}
	for _, l := range append(append([][]byte{}, nodeA...), nodeB...) {
		key := or.Key(t, l)
		if want[key] {
			continue
		}
		want[key] = true
		wantByType[or.Table(t, l)]++
	}

	// The first file in the bucket as an older sgload wrote it, before the
	// _source column: the views read it by name, _source NULL.
	old, err := filepath.Glob(filepath.Join(b.Dir, "sg", "events", "*", "*", "*.parquet"))
	if err != nil || len(old) == 0 {
		t.Fatalf("no event files: %v", err)
	}
	db := duckcheck.Open(t)
	duckcheck.Exec(t, db, fmt.Sprintf("COPY (SELECT * EXCLUDE (_source) FROM read_parquet('%s')) TO '%s.old' (FORMAT parquet)", old[0], old[0]))
	if err := os.Rename(old[0]+".old", old[0]); err != nil {
		t.Fatal(err)
	}

	types, err := layout.EventTypes(context.Background(), b.Bucket, "sg")
	if err != nil {
		t.Fatal(err)
	}
	colls, err := layout.ObjectCollections(context.Background(), b.Bucket, "sg")
	if err != nil || len(colls) != 0 {
		t.Fatalf("collections %v, %v", colls, err)
	}
	var sql bytes.Buffer
	if err := Write(&sql, Options{Dialect: DuckDB, Bucket: b.Dir, Prefix: "sg", EventTypes: types, Collections: colls}); err != nil {
		t.Fatal(err)
	}
	duckcheck.Exec(t, db, sql.String())

	raw := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.events_raw")
	if n := duckcheck.Int(t, db, fmt.Sprintf("SELECT count(*) FROM read_parquet('%s')", old[0])); n == 0 ||
		duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.events_raw WHERE _source IS NULL") != n {
		t.Errorf("the %d rows of the file without _source should read as _source NULL", n)
	}
	got := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.events")
	if raw <= got {
		t.Fatalf("events_raw has %d rows, events %d: the two nodes' overlap should be in the files", raw, got)
	}
	if got != int64(len(want)) {
		t.Errorf("sendgrid.events has %d rows, want %d distinct events", got, len(want))
	}
	if n := duckcheck.Int(t, db, "SELECT count(*) FROM (SELECT sg_event_id FROM sendgrid.events WHERE sg_event_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1)"); n != 0 {
		t.Errorf("%d sg_event_ids twice in sendgrid.events", n)
	}
	for typ, n := range wantByType {
		if typ == "brand_new_event" || typ == "unknown" || typ == "open" || typ == "bounce" {
			if c := duckcheck.Int(t, db, fmt.Sprintf(`SELECT count(*) FROM sendgrid."%s"`, typ)); c != n {
				t.Errorf("view %s: %d rows, want %d", typ, c, n)
			}
		}
	}
	if n := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.activity"); n != int64(len(want)) {
		t.Errorf("activity has %d rows, want every distinct event (%d)", n, len(want))
	}
	// The activity view needs no change for a type it has never heard of.
	if n := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.activity WHERE event_type = 'brand_new_event' AND segment_event IS NULL"); n != 1 {
		t.Errorf("the new event type appears %d times in activity, want 1", n)
	}
	for typ, name := range map[string]string{"open": "Email Opened", "click": "Email Link Clicked", "spamreport": "Email Marked as Spam", "group_unsubscribe": "Unsubscribed"} {
		if n := duckcheck.Int(t, db, fmt.Sprintf("SELECT count(*) FROM sendgrid.activity WHERE event_type = '%s' AND segment_event IS DISTINCT FROM '%s'", typ, name)); n != 0 {
			t.Errorf("%d %s rows without segment_event %q", n, typ, name)
		}
	}
	// Typed: a category sent as a string is a list in the view too.
	if n := duckcheck.Int(t, db, "SELECT len(category) FROM sendgrid.processed WHERE sg_event_id = 'drift-01'"); n != 1 {
		t.Errorf("drift-01 category has %d items, want 1", n)
	}
}

// TestLatestStateAndDeletions syncs a collection three times through a
// scripted API, flushing after each: an object deleted between two complete
// syncs disappears from <collection>_latest; one deleted before a sync that
// fails midway stays, because an incomplete snapshot proves nothing.
func TestLatestStateAndDeletions(t *testing.T) {
	var mu sync.Mutex
	lists := map[int]bool{1: true, 2: true, 3: true}
	broken := false
	bounces := []int{1, 2}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v3/contactdb/lists":
			if broken {
				w.WriteHeader(500)
				return
			}
			var out []any
			for id := 1; id <= 3; id++ {
				if lists[id] {
					out = append(out, map[string]any{"id": id, "name": fmt.Sprintf("list %d", id), "recipient_count": id})
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"lists": out})
		case "/v3/suppression/bounces":
			var out []any
			for _, b := range bounces {
				out = append(out, map[string]any{"email": fmt.Sprintf("b%d@example.com", b), "created": 1700000000 + b, "reason": "550"})
			}
			json.NewEncoder(w).Encode(out)
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	api, err := sendgrid.New(srv.URL, "SG.key", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	api.MaxRetries = 0
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	syncAndFlush := func(wantFailed int) {
		t.Helper()
		sum, err := objectsync.Run(context.Background(), objectsync.Options{Spool: spool.Dir{Root: root}, Node: "n1", Client: api,
			Collections: []string{"lists", "bounces"}})
		if err != nil || len(sum.Failed) != wantFailed {
			t.Fatalf("sync: %v, failed %v", err, sum)
		}
		if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket}); err != nil {
			t.Fatal(err)
		}
	}
	latest := func() (ids []int64, history int64) {
		t.Helper()
		colls, err := layout.ObjectCollections(context.Background(), b.Bucket, "")
		if err != nil {
			t.Fatal(err)
		}
		var sql bytes.Buffer
		if err := Write(&sql, Options{Dialect: DuckDB, Bucket: b.Dir, Collections: colls, EventTypes: nil}); err != nil {
			t.Fatal(err)
		}
		db := duckcheck.Open(t)
		// Only the object part: no event was flushed, so there are no event files.
		for _, stmt := range strings.Split(sql.String(), ";\n\n") {
			if strings.Contains(stmt, "events") || strings.Contains(stmt, "activity") || strings.TrimSpace(stmt) == "" {
				continue
			}
			duckcheck.Exec(t, db, stmt)
		}
		for _, r := range duckcheck.Rows(t, db, "SELECT id FROM sendgrid.lists_latest ORDER BY id") {
			ids = append(ids, r[0].(int64))
		}
		return ids, duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.lists_history")
	}

	syncAndFlush(0)
	if ids, _ := latest(); fmt.Sprint(ids) != "[1 2 3]" {
		t.Fatalf("after the first sync: %v", ids)
	}
	mu.Lock()
	delete(lists, 2)
	bounces = []int{3} // incremental: the next pull returns only the new one
	mu.Unlock()
	syncAndFlush(0)
	ids, hist := latest()
	if fmt.Sprint(ids) != "[1 3]" || hist != 5 {
		t.Fatalf("after list 2 was deleted: latest %v, history %d rows; want [1 3] and all 5 versions", ids, hist)
	}
	mu.Lock()
	delete(lists, 3)
	broken = true
	mu.Unlock()
	syncAndFlush(1)
	if ids, _ := latest(); fmt.Sprint(ids) != "[1 3]" {
		t.Fatalf("after an incomplete sync: %v; list 3 must stay until a complete snapshot lacks it", ids)
	}
	db := duckcheck.Open(t)
	var sql bytes.Buffer
	Write(&sql, Options{Dialect: DuckDB, Bucket: b.Dir, Collections: []string{"bounces"}})
	for _, stmt := range strings.Split(sql.String(), ";\n\n") {
		if !strings.Contains(stmt, "events") && !strings.Contains(stmt, "activity") && strings.TrimSpace(stmt) != "" {
			duckcheck.Exec(t, db, stmt)
		}
	}
	// Incremental: the full first pull and the later increment together.
	if n := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.bounces_latest"); n != 3 {
		t.Fatalf("bounces_latest has %d rows, want 3 (2 from the full pull, 1 incremental)", n)
	}

	// A compaction's grace leaves its inputs beside its output, so every
	// compacted row is in two files: the history views show it once.
	ids, hist = latest()
	sum, err := rewrite.Compact(context.Background(), rewrite.Options{Bucket: b.Bucket, Grace: rewrite.DefaultGrace, WorkDir: t.TempDir(),
		Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil || len(sum.Rewrites) == 0 {
		t.Fatalf("compact: %v, %+v", err, sum)
	}
	db = duckcheck.Open(t)
	objectViews(t, db, b.Dir, []string{"lists"})
	if raw := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.lists_raw"); raw <= hist {
		t.Fatalf("lists_raw has %d rows, lists_history %d: the compaction's inputs should still be there", raw, hist)
	}
	gotIDs, gotHist := latest()
	if gotHist != hist || fmt.Sprint(gotIDs) != fmt.Sprint(ids) {
		t.Fatalf("during the grace: history %d rows, latest %v; want %d and %v as before the compaction", gotHist, gotIDs, hist, ids)
	}
	if n := duckcheck.Int(t, db, "SELECT count(*) - count(DISTINCT sync_id) FROM sendgrid.sync_snapshots"); n != 0 {
		t.Fatalf("%d snapshots listed twice during the grace", n)
	}
}

// objectViews runs the object part of the DuckDB views over the bucket at
// dir (no event was flushed, so there are no event files to read).
func objectViews(t *testing.T, db *sql.DB, dir string, collections []string) {
	t.Helper()
	var sql bytes.Buffer
	if err := Write(&sql, Options{Dialect: DuckDB, Bucket: dir, Collections: collections}); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range strings.Split(sql.String(), ";\n\n") {
		if !strings.Contains(stmt, "events") && !strings.Contains(stmt, "activity") && strings.TrimSpace(stmt) != "" {
			duckcheck.Exec(t, db, stmt)
		}
	}
}

// TestMessagesAgeOut: the Email Activity API forgets a message after 30
// days, so a full pull that lacks one proves nothing, and messages_latest
// keeps it; a bounce a full pull lacks is gone, and bounces_latest drops it.
func TestMessagesAgeOut(t *testing.T) {
	var mu sync.Mutex
	recent := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	messages := map[string]bool{"m1": true, "m2": true}
	bounces := map[string]bool{"b1@example.com": true, "b2@example.com": true}
	window := regexp.MustCompile(`BETWEEN TIMESTAMP "([^"]+)" AND TIMESTAMP "([^"]+)"`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v3/messages":
			m := window.FindStringSubmatch(r.URL.Query().Get("query"))
			if m == nil {
				w.WriteHeader(400)
				return
			}
			from, _ := time.Parse(time.RFC3339, m[1])
			to, _ := time.Parse(time.RFC3339, m[2])
			out := []any{}
			if !recent.Before(from) && !recent.After(to) {
				for id := range messages {
					out = append(out, map[string]any{"msg_id": id, "from_email": "a@example.com", "to_email": "b@example.com",
						"subject": "hi", "status": "delivered", "opens_count": 1, "clicks_count": 0, "last_event_time": recent.Format(time.RFC3339)})
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"messages": out})
		case "/v3/suppression/bounces":
			out := []any{}
			for e := range bounces {
				out = append(out, map[string]any{"email": e, "created": 1700000000, "reason": "550"})
			}
			json.NewEncoder(w).Encode(out)
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	api, err := sendgrid.New(srv.URL, "SG.key", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	api.MaxRetries = 0
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	for i, full := range []bool{false, true} { // the first sync is a full one anyway
		if i == 1 {
			mu.Lock()
			delete(messages, "m1")
			delete(bounces, "b1@example.com")
			mu.Unlock()
		}
		sum, err := objectsync.Run(context.Background(), objectsync.Options{Spool: spool.Dir{Root: root}, Node: "n1", Client: api,
			Collections: []string{"messages", "bounces"}, FullRefresh: full})
		if err != nil || len(sum.Failed) != 0 {
			t.Fatalf("sync %d: %v, %+v", i, err, sum)
		}
		if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket}); err != nil {
			t.Fatal(err)
		}
	}
	db := duckcheck.Open(t)
	objectViews(t, db, b.Dir, []string{"messages", "bounces"})
	col := func(q string) string {
		var out []string
		for _, r := range duckcheck.Rows(t, db, q) {
			out = append(out, fmt.Sprint(r[0]))
		}
		return strings.Join(out, " ")
	}
	if got := col("SELECT msg_id FROM sendgrid.messages_latest ORDER BY 1"); got != "m1 m2" {
		t.Errorf("messages_latest: %q, want m1 m2 (m1 aged out of the API, not deleted)", got)
	}
	if got := col("SELECT email FROM sendgrid.bounces_latest ORDER BY 1"); got != "b2@example.com" {
		t.Errorf("bounces_latest: %q, want b2@example.com (b1 was removed, and a full pull lacks it)", got)
	}
}

// TestLoaderAndViewsAgree: two nodes both receive the same retries (and
// twins, SendGrid's samples that share one id, events without an id
// re-posted with their keys reordered and spaced); each flushes into the
// same bucket. The events view over both must hold exactly what one node
// that received every POST loads, and what the rule computed without
// sgload says.
func TestLoaderAndViewsAgree(t *testing.T) {
	sample := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:400]
	samples := spooltest.Lines(t, "../testdata/events/sendgrid-samples.ndjson")
	twins := [][]byte{
		[]byte(`{"email":"a@x.com","timestamp":1767225600,"event":"open","sg_event_id":"TWIN-A","sg_message_id":"m1"}`),
		[]byte(`{"email":"a@x.com","timestamp":1767225600,"event":"open","sg_event_id":"TWIN-B","sg_message_id":"m1"}`),
	}
	noID := [][]byte{
		[]byte(`{"email":"u@x.com","timestamp":1767225600,"event":"group_unsubscribe","asm_group_id":42}`),
		[]byte(`{"email":"v@x.com","timestamp":1767225600,"event":"unsubscribe"}`),
	}
	reordered := [][]byte{
		[]byte(`{ "asm_group_id" : 42, "event":"group_unsubscribe","timestamp":1767225600, "email":"u@x.com"}`),
		[]byte(`{"timestamp":1767225600,"event":"unsubscribe","email":"v@x.com"}`),
	}
	var spaced [][]byte
	for _, s := range samples {
		var buf bytes.Buffer
		json.Indent(&buf, s, "", " ")
		spaced = append(spaced, buf.Bytes())
	}
	// Each node gets its own traffic and every retry.
	posts := map[string][][][]byte{
		"node-a": {sample[:250], samples, twins, noID, sample[200:300], spaced, reordered},
		"node-b": {sample[200:], spaced, twins[1:], reordered, noID, sample[:50]},
	}
	b := testbucket.Open(t, "file")
	single := t.TempDir()
	var all [][]byte
	for _, node := range []string{"node-a", "node-b"} {
		root := t.TempDir()
		for _, p := range posts[node] {
			spooltest.Fill(t, root, p, spooltest.Options{Node: node, PerPost: len(p)})
			spooltest.Fill(t, single, p, spooltest.Options{Node: "single", PerPost: len(p)})
			all = append(all, p...)
		}
		if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: "two"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: single}, Bucket: b.Bucket, Prefix: "one"}); err != nil {
		t.Fatal(err)
	}
	var or spooltest.Oracle
	want := map[string]int{}
	for _, l := range all {
		want[or.Key(t, l)] = 1
	}

	db := duckcheck.Open(t)
	keysOf := func(query string) map[string]int {
		got := map[string]int{}
		for _, r := range duckcheck.Rows(t, db, query) {
			got[or.Key(t, []byte(r[0].(string)))]++
		}
		return got
	}
	types, err := layout.EventTypes(context.Background(), b.Bucket, "two")
	if err != nil {
		t.Fatal(err)
	}
	var sql bytes.Buffer
	if err := Write(&sql, Options{Dialect: DuckDB, Bucket: b.Dir, Prefix: "two", EventTypes: types, Collections: []string{}}); err != nil {
		t.Fatal(err)
	}
	duckcheck.Exec(t, db, sql.String())
	views := keysOf("SELECT _raw FROM sendgrid.events")
	loaded := keysOf(fmt.Sprintf("SELECT _raw FROM read_parquet('%s/one/events/*/*/*.parquet')", b.Dir))
	if raw := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.events_raw"); raw <= int64(len(want)) {
		t.Fatalf("the two nodes' files hold %d rows for %d events: no overlap to dedupe", raw, len(want))
	}
	if diff := cmp.Diff(want, views); diff != "" {
		t.Errorf("views over two nodes differ from the rule (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, loaded); diff != "" {
		t.Errorf("one node's flush differs from the rule (-want +got):\n%s", diff)
	}
}

package backfill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/prismtest"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/sendgrid"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

const key = "SG.backfill-test"

// fakeLogs is SendGrid's Email Logs API as its spec describes it, over a
// set of events: a search answers at most limit messages, with no page
// token; a message carries its events with custom args nested.
type fakeLogs struct {
	t        *testing.T
	srv      *httptest.Server
	messages map[string]*message
	order    []*message // by creation time
	mu       sync.Mutex
	searches int
	gets     int
	limited  bool // answer the first search with a 429
	refuse   int  // answer every call with this status
}

type message struct {
	id      string
	created time.Time
	events  []map[string]any
}

// known are the members the webhook sets itself; the rest are custom args,
// which the Logs API nests under custom_args.
var known = map[string]bool{"smtp-id": true, "from": true, "url_offset": true, "pool": true}

func init() {
	for _, c := range schema.EventColumns() {
		known[c.Name] = true
	}
}

func newFakeLogs(t *testing.T, events [][]byte) *fakeLogs {
	f := &fakeLogs{t: t, messages: map[string]*message{}}
	seen := map[string]bool{}
	for _, raw := range events {
		var ev map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		id, _ := ev["sg_message_id"].(string)
		eid, _ := ev["sg_event_id"].(string)
		if id == "" || eid == "" || seen[eid] {
			continue // the sample's redeliveries are one event
		}
		seen[eid] = true
		logs := map[string]any{}
		custom := map[string]any{}
		for k, v := range ev {
			if known[k] {
				logs[k] = v
			} else {
				custom[k] = v
			}
		}
		if len(custom) > 0 {
			logs["custom_args"] = custom
		}
		ts, _ := ev["timestamp"].(json.Number).Int64()
		m := f.messages[id]
		if m == nil {
			m = &message{id: id, created: time.Unix(ts, 0).UTC()}
			f.messages[id] = m
		}
		if at := time.Unix(ts, 0).UTC(); at.Before(m.created) {
			m.created = at
		}
		m.events = append(m.events, logs)
	}
	for _, m := range f.messages {
		f.order = append(f.order, m)
	}
	sort.Slice(f.order, func(i, j int) bool {
		return f.order[i].created.Before(f.order[j].created) || f.order[i].created.Equal(f.order[j].created) && f.order[i].id < f.order[j].id
	})
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLogs) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+key || f.refuse != 0 {
		w.WriteHeader(max(f.refuse, 401))
		io.WriteString(w, `{"errors":[{"message":"access forbidden"}]}`)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v3/logs":
		f.searches++
		if f.limited && f.searches == 2 {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10))
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"errors":[{"message":"too many requests"}]}`)
			return
		}
		var req struct {
			Query string `json:"query"`
			Limit int    `json:"limit"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Limit < 1 || req.Limit > 1000 {
			w.WriteHeader(400)
			return
		}
		from, to := time.Time{}, time.Now().Add(100*365*24*time.Hour)
		if req.Query != "" {
			var a, b string
			if _, err := fmt.Sscanf(req.Query, `sg_message_id_created_at >= TIMESTAMP %q AND sg_message_id_created_at < TIMESTAMP %q`, &a, &b); err != nil {
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"errors":[{"message":"bad query %q"}]}`, req.Query)
				return
			}
			from, _ = time.Parse(time.RFC3339, a)
			to, _ = time.Parse(time.RFC3339, b)
		}
		out := []map[string]any{}
		for _, m := range f.order {
			if !m.created.Before(from) && m.created.Before(to) && len(out) < req.Limit {
				out = append(out, map[string]any{"sg_message_id": m.id, "from_email": "f@x.com", "subject": "s", "to_email": "t@x.com",
					"status": "delivered", "sg_message_id_created_at": m.created.Format(time.RFC3339)})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"messages": out})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v3/logs/"):
		f.gets++
		m := f.messages[strings.TrimPrefix(r.URL.Path, "/v3/logs/")]
		if m == nil {
			w.WriteHeader(404)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"sg_message_id": m.id, "to_email": "t@x.com", "status": "delivered", "events": m.events})
	default:
		w.WriteHeader(404)
	}
}

func (f *fakeLogs) client(t *testing.T) *sendgrid.Client {
	c, err := sendgrid.New(f.srv.URL, key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// postLive writes events into the spool as webhook POSTs received at the
// events' own time (live traffic), skipping those lost wants gone.
func postLive(t *testing.T, root string, events [][]byte, lost func(time.Time) bool) {
	t.Helper()
	byHour := map[int64][][]byte{}
	var hours []int64
	for _, raw := range events {
		at := eventTime(t, raw)
		h := at.Unix() / 3600
		if lost(at) {
			continue
		}
		if byHour[h] == nil {
			hours = append(hours, h)
		}
		byHour[h] = append(byHour[h], raw)
	}
	sort.Slice(hours, func(i, j int) bool { return hours[i] < hours[j] })
	for _, h := range hours {
		at := time.Unix(h*3600, 0)
		sp, err := spool.OpenWriter(root, spool.Options{Node: "web", MinFreeBytes: -1, Registerer: prometheus.NewRegistry(),
			Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		evs := byHour[h]
		for i := 0; i < len(evs); i += 20 {
			chunk := evs[i:min(i+20, len(evs))]
			p, err := spool.Prepare(len(chunk), "signature", nil, spooltest.Body(chunk))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sp.Append(context.Background(), p); err != nil {
				t.Fatal(err)
			}
		}
		sp.Close()
	}
}

func eventTime(t *testing.T, raw []byte) time.Time {
	var ev struct {
		Timestamp int64 `json:"timestamp"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	return time.Unix(ev.Timestamp, 0).UTC()
}

// eventRows reads the events under prefix as (type, sg_event_id, email,
// timestamp, message, categories, custom args parsed), sorted.
func eventRows(t *testing.T, b *testbucket.Bucket, prefix string) []string {
	t.Helper()
	glob := filepath.Join(b.Mirror(t, prefix), prefix, "events", "*", "*", "*.parquet")
	db := duckcheck.Open(t)
	q := fmt.Sprintf(`SELECT event_type, sg_event_id, coalesce(email, ''), CAST("timestamp" AS VARCHAR), coalesce(sg_message_id, ''),
		CAST(category AS VARCHAR), coalesce(custom_args, '{}') FROM read_parquet('%s', hive_partitioning = true) ORDER BY ALL`, glob)
	var out []string
	for _, r := range duckcheck.Rows(t, db, q) {
		var custom map[string]any
		json.Unmarshal([]byte(r[6].(string)), &custom)
		c, _ := json.Marshal(custom)
		out = append(out, fmt.Sprint(r[:6]...)+" "+string(c))
	}
	return out
}

var (
	outageFrom = time.Date(2026, 1, 1, 20, 0, 0, 0, time.UTC)
	outageTo   = time.Date(2026, 1, 2, 23, 0, 0, 0, time.UTC) // 27 h: SendGrid's retries ran out
	after      = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
)

// TestBackfillAfterAnOutage: the webhook was down 27 h, so the events of
// those hours never came. backfill --gaps finds the hours, fetches them
// from the Email Logs API (in windows halved while full, through a 429),
// and the flushed bucket holds what an uninterrupted webhook run holds,
// each event once, the backfilled ones marked logs_api.
func TestBackfillAfterAnOutage(t *testing.T) {
	events := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")
	logs := newFakeLogs(t, events)
	logs.limited = true
	b := testbucket.Open(t, "file")

	full := t.TempDir()
	postLive(t, full, events, func(time.Time) bool { return false })
	flush(t, full, b, "full")

	root := t.TempDir()
	lost := func(at time.Time) bool { return !at.Before(outageFrom) && at.Before(outageTo) }
	postLive(t, root, events, lost)
	sum, err := Run(context.Background(), Options{Spool: spool.Dir{Root: root}, Client: logs.client(t),
		Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Until: after, Gaps: true, Limit: 40, Window: 6 * time.Hour,
		Now: func() time.Time { return after }})
	if err != nil {
		t.Fatal(err)
	}
	covered := false
	for _, r := range sum.Ranges {
		if !r.From.After(outageFrom) && !r.To.Before(outageTo) {
			covered = true
		}
	}
	if !covered || sum.Spooled == 0 || sum.Windows < 4 {
		t.Fatalf("backfill %+v: want a gap covering the outage, fetched in several windows", sum)
	}
	t.Logf("backfill: %d ranges, %d windows, %d messages, %d events kept, %d spooled", len(sum.Ranges), sum.Windows, sum.Messages, sum.Kept, sum.Spooled)
	flush(t, root, b, "outage")
	want, got := eventRows(t, b, "full"), eventRows(t, b, "outage")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("outage + backfill differs from the uninterrupted run (-full +outage):\n%s", diff)
	}
	glob := filepath.Join(b.Mirror(t, "outage"), "outage", "events", "*", "*", "*.parquet")
	db := duckcheck.Open(t)
	n := duckcheck.Int(t, db, fmt.Sprintf(`SELECT count(*) FROM read_parquet('%s') WHERE _source = 'logs_api' AND ("timestamp" < '%s' OR "timestamp" >= '%s')`,
		glob, outageFrom.Format(time.RFC3339), outageTo.Format(time.RFC3339)))
	lostN := duckcheck.Int(t, db, fmt.Sprintf(`SELECT count(*) FROM read_parquet('%s') WHERE _source = 'logs_api'`, glob))
	if n != 0 || lostN == 0 {
		t.Errorf("%d backfilled rows outside the outage, %d in all: the webhook's copies should win outside it", n, lostN)
	}
}

// TestBackfillOverlapsTheWebhook: a range the webhook delivered in full,
// backfilled, adds nothing.
func TestBackfillOverlapsTheWebhook(t *testing.T) {
	events := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:600]
	logs := newFakeLogs(t, events)
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	postLive(t, root, events, func(time.Time) bool { return false })
	flush(t, root, b, "p")
	before := eventRows(t, b, "p")
	sum, err := Run(context.Background(), Options{Spool: spool.Dir{Root: root}, Client: logs.client(t),
		Since: time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC), Until: after, Now: func() time.Time { return after }})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Spooled == 0 {
		t.Fatal("nothing backfilled: the test shows nothing")
	}
	s := flush(t, root, b, "p")
	if s.Rows != 0 || s.Duplicates != int64(sum.Spooled) {
		t.Fatalf("flush after the backfill: %d rows, %d duplicates; want every backfilled event a duplicate", s.Rows, s.Duplicates)
	}
	if diff := cmp.Diff(before, eventRows(t, b, "p")); diff != "" {
		t.Fatal(diff)
	}
}

// TestBackfillResumes: stopped after two windows, a rerun of the same
// backfill goes on from there.
func TestBackfillResumes(t *testing.T) {
	events := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")
	logs := newFakeLogs(t, events)
	root := t.TempDir()
	spool.Create(root)
	ctx, cancel := context.WithCancel(context.Background())
	o := Options{Spool: spool.Dir{Root: root}, Client: logs.client(t), Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Until: after,
		Window: 12 * time.Hour, Now: func() time.Time { return after }}
	windows := 0
	o.Progress = func(Progress) {
		if windows++; windows == 2 {
			cancel()
		}
	}
	if _, err := Run(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want it cancelled", err)
	}
	o.Progress = nil
	first := logs.searches
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Resumed || logs.searches-first >= first+sum.Windows {
		t.Fatalf("second run %+v with %d searches: want it resumed", sum, logs.searches-first)
	}
}

func TestBackfillDryRunAndAccess(t *testing.T) {
	events := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:300]
	logs := newFakeLogs(t, events)
	root := t.TempDir()
	spool.Create(root)
	o := Options{Spool: spool.Dir{Root: root}, Client: logs.client(t), Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Until: after,
		DryRun: true, Now: func() time.Time { return after }}
	sum, err := Run(context.Background(), o)
	if err != nil || sum.Kept == 0 || sum.Spooled != 0 {
		t.Fatalf("dry run: %+v, %v", sum, err)
	}
	if segs, _ := (spool.Dir{Root: root}).Sealed(); len(segs) != 0 {
		t.Fatalf("a dry run spooled %v", segs)
	}
	logs.refuse = 403
	before := logs.searches + logs.gets
	if _, err := Run(context.Background(), o); !errors.Is(err, ErrAccess) {
		t.Fatalf("forbidden: %v, want ErrAccess", err)
	}
	if logs.searches+logs.gets != before {
		t.Fatal("a refused key was tried more than once")
	}
}

// TestBackfillAgainstSendGridSpec runs a backfill against Prism serving
// SendGrid's Email Logs spec: every request must be one the spec accepts,
// and the spec's example event must land as a row with its custom args.
func TestBackfillAgainstSendGridSpec(t *testing.T) {
	p := prismtest.New(t, []prismtest.Route{{Prefix: "/v3/logs", Spec: "tsg_logs_v3.json"}})
	api, err := sendgrid.New(p.URL, key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	api.MaxRetries = 0
	root := t.TempDir()
	spool.Create(root)
	day := time.Date(2025, 8, 14, 0, 0, 0, 0, time.UTC) // the spec example's event
	sum, err := Run(context.Background(), Options{Spool: spool.Dir{Root: root}, Client: api, Since: day, Until: day.Add(24 * time.Hour),
		Lookback: time.Hour, Window: 12 * time.Hour, Now: func() time.Time { return day.Add(48 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Refused() {
		t.Errorf("the spec refused a request: %s", r)
	}
	if sum.Spooled == 0 {
		t.Fatalf("nothing spooled from the spec's example: %+v", sum)
	}
	b := testbucket.Open(t, "file")
	flush(t, root, b, "p")
	glob := filepath.Join(b.Dir, "p", "events", "*", "*", "*.parquet")
	db := duckcheck.Open(t)
	if n := duckcheck.Int(t, db, fmt.Sprintf(`SELECT count(*) FROM read_parquet('%s') WHERE _source = 'logs_api' AND json_extract_string(custom_args, '$.key1') = 'value1'`, glob)); n == 0 {
		t.Fatal("the example's custom args did not reach custom_args at the top level")
	}
}

func flush(t *testing.T, root string, b *testbucket.Bucket, prefix string) *loader.Summary {
	t.Helper()
	s, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

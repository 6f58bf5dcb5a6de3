package objectsync

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sgload/sgload/sendgrid"
	"github.com/sgload/sgload/spool"
)

const key = "SG.test-key-never-printed"

// fakeAPI is a scripted SendGrid: enough of each endpoint to exercise every
// pagination style and failure the client must survive.
type fakeAPI struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	calls   map[string]int
	queries []string

	lists       int // legacy lists
	recipients  int
	bounces     int
	mcLists     int // over pages of 2
	foreverNext bool
	fail        map[string]int // path -> status to answer always
	failOnce    map[string]int // path -> status to answer the first time
	rateLimited map[string]bool
	deleted     map[int]bool // legacy list ids deleted
	now         func() time.Time
	started     time.Time
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, calls: map[string]int{}, lists: 3, recipients: 2500, bounces: 1200, mcLists: 5,
		fail: map[string]int{}, failOnce: map[string]int{}, rateLimited: map[string]bool{}, deleted: map[int]bool{}, now: time.Now, started: time.Now().Add(-time.Minute)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// activityWindow reads the Email Activity API's time window query.
func activityWindow(q string) (from, to time.Time, err error) {
	var a, b string
	if _, err := fmt.Sscanf(q, `last_event_time BETWEEN TIMESTAMP %q AND TIMESTAMP %q`, &a, &b); err != nil {
		return from, to, err
	}
	if from, err = time.Parse(time.RFC3339, a); err == nil {
		to, err = time.Parse(time.RFC3339, b)
	}
	return from, to, err
}

func (f *fakeAPI) client(t *testing.T) (*sendgrid.Client, *[]time.Duration) {
	c, err := sendgrid.New(f.srv.URL, key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	var mu sync.Mutex
	c.Sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	return c, &waits
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls[r.URL.Path]++
	n := f.calls[r.URL.Path]
	f.queries = append(f.queries, r.URL.String())
	status, failing := f.fail[r.URL.Path]
	once, failOnce := f.failOnce[r.URL.Path]
	limited := f.rateLimited[r.URL.Path]
	f.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/download/") {
		f.download(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+key {
		w.WriteHeader(401)
		writeJSON(w, map[string]any{"errors": []any{map[string]string{"message": "authorization required"}}})
		return
	}
	if failing {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errors":[{"message":"scripted %d"}]}`, status)
		return
	}
	if failOnce && n == 1 {
		w.WriteHeader(once)
		fmt.Fprintf(w, `{"errors":[{"message":"scripted %d"}]}`, once)
		return
	}
	if limited && n == 1 {
		w.Header().Set("X-RateLimit-Limit", "150")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(f.now().Add(7*time.Second).Unix(), 10))
		w.WriteHeader(429)
		io.WriteString(w, `{"errors":[{"field":null,"message":"too many requests"}]}`)
		return
	}
	q := r.URL.Query()
	switch p := r.URL.Path; {
	case p == "/v3/contactdb/lists":
		var ls []any
		for i := 1; i <= f.lists; i++ {
			if !f.deleted[i] {
				ls = append(ls, map[string]any{"id": i, "name": fmt.Sprintf("list %d", i), "recipient_count": i * 10})
			}
		}
		writeJSON(w, map[string]any{"lists": ls})
	case p == "/v3/contactdb/segments":
		writeJSON(w, map[string]any{"segments": []any{map[string]any{"id": 7, "name": "gmail", "list_id": 1, "conditions": []any{map[string]string{"field": "email", "value": "@gmail.com", "operator": "contains"}}, "recipient_count": 3}}})
	case p == "/v3/contactdb/recipients":
		page, _ := strconv.Atoi(q.Get("page"))
		size, _ := strconv.Atoi(q.Get("page_size"))
		from := (page - 1) * size
		if from >= f.recipients {
			w.WriteHeader(404)
			io.WriteString(w, `{"errors":[{"message":"No more pages"}]}`)
			return
		}
		var rs []any
		for i := from; i < min(from+size, f.recipients); i++ {
			rs = append(rs, map[string]any{"id": fmt.Sprintf("r%d", i), "email": fmt.Sprintf("r%d@example.com", i), "created_at": 1500000000 + i})
		}
		writeJSON(w, map[string]any{"recipients": rs})
	case p == "/v3/campaigns":
		off, _ := strconv.Atoi(q.Get("offset"))
		var cs []any
		for i := off; i < min(off+100, 150); i++ {
			cs = append(cs, map[string]any{"id": 900 + i, "title": "c", "categories": []string{"a"}, "status": "Sent"})
		}
		writeJSON(w, map[string]any{"result": cs})
	case p == "/v3/marketing/lists":
		tok, _ := strconv.Atoi(q.Get("page_token"))
		var ls []any
		for i := tok; i < min(tok+2, f.mcLists); i++ {
			ls = append(ls, map[string]any{"id": fmt.Sprintf("mc-%d", i), "name": "l", "contact_count": i})
		}
		next := ""
		if f.foreverNext || tok+2 < f.mcLists {
			next = f.srv.URL + "/v3/marketing/lists?page_size=1000&page_token=" + strconv.Itoa(tok+2)
			if f.foreverNext && len(ls) == 0 {
				ls = append(ls, map[string]any{"id": "x" + strconv.Itoa(tok), "name": "again"})
			}
		}
		writeJSON(w, map[string]any{"result": ls, "_metadata": map[string]any{"next": next}})
	case p == "/v3/marketing/segments/2.0":
		writeJSON(w, map[string]any{"results": []any{map[string]any{"id": "s1", "name": "seg", "parent_list_ids": []string{"mc-1"}, "created_at": "2024-01-01T00:00:00Z"}}})
	case p == "/v3/marketing/singlesends", p == "/v3/templates":
		writeJSON(w, map[string]any{"result": []any{map[string]any{"id": "x1", "name": "n", "updated_at": "2020-11-12 12:00:09"}}, "_metadata": map[string]any{}})
	case p == "/v3/marketing/field_definitions":
		writeJSON(w, map[string]any{"custom_fields": []any{map[string]any{"id": "w1", "name": "num_orders", "field_type": "Number"}},
			"reserved_fields": []any{map[string]any{"name": "email", "field_type": "Text", "read_only": true}}})
	case strings.HasPrefix(p, "/v3/suppression/"):
		off, _ := strconv.Atoi(q.Get("offset"))
		total := f.bounces
		if p != "/v3/suppression/bounces" {
			total = 3
		}
		var bs []any
		for i := off; i < min(off+500, total); i++ {
			bs = append(bs, map[string]any{"created": 1700000000 + i, "email": fmt.Sprintf("b%d@example.com", i), "reason": "550", "status": "5.1.1"})
		}
		if bs == nil {
			bs = []any{}
		}
		writeJSON(w, bs)
	case p == "/v3/messages":
		// 2,500 messages, one a minute: more than the API's 1,000
		// in a day, so windows must be halved.
		from, to, err := activityWindow(q.Get("query"))
		if err != nil || q.Get("limit") != "1000" {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"errors":[{"message":"bad query %q: %v"}]}`, q.Get("query"), err)
			return
		}
		// Fixed at the fake's start: a clock read per request would move
		// messages between the sync's windows (or past its end) as the
		// second turns during the test.
		var ms []any
		for i := range 2500 {
			at := f.started.Add(-time.Duration(i) * time.Minute).UTC().Truncate(time.Second)
			if !at.Before(from) && !at.After(to) && len(ms) < 1000 {
				ms = append(ms, map[string]any{"msg_id": fmt.Sprintf("m%d", i), "to_email": "x@example.com", "status": "delivered",
					"opens_count": i % 3, "clicks_count": 0, "last_event_time": at.Format(time.RFC3339)})
			}
		}
		writeJSON(w, map[string]any{"messages": ms})
	case p == "/v3/asm/groups":
		writeJSON(w, []any{map[string]any{"id": 11, "name": "news", "is_default": true, "unsubscribes": 2}, map[string]any{"id": 12, "name": "promo"}})
	case strings.HasPrefix(p, "/v3/asm/groups/"):
		writeJSON(w, []string{"u1@example.com", "u2@example.com"})
	case p == "/v3/marketing/contacts/exports" && r.Method == "POST":
		body, _ := io.ReadAll(r.Body)
		if !bytes.Contains(body, []byte(`"file_type":"json"`)) {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(202)
		writeJSON(w, map[string]any{"id": "job-1", "_metadata": map[string]any{}})
	case p == "/v3/marketing/contacts/exports/job-1":
		if n < 3 {
			writeJSON(w, map[string]any{"id": "job-1", "status": "pending"})
			return
		}
		writeJSON(w, map[string]any{"id": "job-1", "status": "ready", "urls": []string{f.srv.URL + "/download/contacts.json.gz", f.srv.URL + "/download/contacts.csv"}})
	default:
		w.WriteHeader(404)
	}
}

func (f *fakeAPI) download(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		f.t.Error("the API key was sent to the export download host")
	}
	switch r.URL.Path {
	case "/download/contacts.json.gz":
		gz := gzip.NewWriter(w)
		for i := range 1500 {
			fmt.Fprintf(gz, `{"id":"c%d","email":"c%d@example.com","list_ids":["mc-1"],"created_at":"2024-01-02T03:04:05Z"}`+"\n", i, i)
		}
		gz.Close()
	case "/download/contacts.csv":
		io.WriteString(w, "EMAIL,FIRST_NAME,CONTACT_ID,CREATED_AT\nz1@example.com,Zed,z1,2024-01-01T00:00:00Z\nz2@example.com,,z2,2024-01-01T00:00:00Z\n")
	}
}

// snapshots reads the spool's committed snapshots: rows per collection, and
// whether each ended with its completion record.
func snapshots(t *testing.T, root string) (rows map[string]int, complete map[string]int) {
	t.Helper()
	rows, complete = map[string]int{}, map[string]int{}
	segs, err := spool.Dir{Root: root}.Sealed()
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range segs {
		coll := filepath.Base(filepath.Dir(sg.Path))
		r, err := spool.OpenReader(sg.Path)
		if err != nil {
			t.Fatal(err)
		}
		var last *spool.Record
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.Header[spool.HeaderSnapshot] != "complete" {
				rows[coll] += rec.Events
			}
			last = rec
		}
		r.Close()
		if last != nil && last.Header[spool.HeaderSnapshot] == "complete" {
			complete[coll]++
		}
	}
	return rows, complete
}

func TestSyncEveryCollection(t *testing.T) {
	api := newFakeAPI(t)
	api.rateLimited["/v3/contactdb/lists"] = true
	api.failOnce["/v3/campaigns"] = 503
	c, waits := api.client(t)
	root := t.TempDir()
	sum, err := Run(context.Background(), Options{Spool: spool.Dir{Root: root}, Node: "t", Client: c, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Failed) != 0 {
		for _, r := range sum.Results {
			if r.Error != "" {
				t.Errorf("%s: %s", r.Collection, r.Error)
			}
		}
		t.Fatalf("failed: %v", sum.Failed)
	}
	rows, complete := snapshots(t, root)
	want := map[string]int{"lists": 3, "segments": 1, "recipients": 2500, "campaigns": 150, "mc_lists": 5, "mc_segments": 1,
		"mc_contacts": 1502, "singlesends": 1, "field_definitions": 2, "bounces": 1200, "blocks": 3, "spam_reports": 3,
		"invalid_emails": 3, "global_unsubscribes": 3, "unsubscribe_groups": 2, "unsubscribe_group_members": 4, "templates": 1,
		"messages": 2500}
	for coll, n := range want {
		if rows[coll] != n || complete[coll] != 1 {
			t.Errorf("%s: %d rows in %d complete snapshots; want %d in 1", coll, rows[coll], complete[coll], n)
		}
	}
	// The 429 waited until X-RateLimit-Reset (an epoch 7 s away), not 7 × backoff.
	found := false
	for _, w := range *waits {
		if w > 6*time.Second && w < 8*time.Second {
			found = true
		}
	}
	if !found {
		t.Errorf("waits %v: none until the rate limit's reset", *waits)
	}
	if api.calls["/v3/campaigns"] < 3 {
		t.Errorf("campaigns called %d times: the 503 was not retried", api.calls["/v3/campaigns"])
	}
	// Incremental: the next sync of suppressions asks only for what is new.
	if _, err := Run(context.Background(), Options{Spool: spool.Dir{Root: root}, Node: "t", Client: c, Collections: []string{"bounces"}}); err != nil {
		t.Fatal(err)
	}
	last := api.queries[len(api.queries)-1]
	if !strings.Contains(last, "start_time=") {
		t.Errorf("second bounces sync asked %s, want a start_time window", last)
	}
}

func TestOneFailingCollectionDoesNotStopTheOthers(t *testing.T) {
	api := newFakeAPI(t)
	api.fail["/v3/templates"] = 403
	api.fail["/v3/marketing/singlesends"] = 500
	c, _ := api.client(t)
	c.MaxRetries = 2
	root := t.TempDir()
	sum, err := Run(context.Background(), Options{Spool: spool.Dir{Root: root}, Node: "t", Client: c,
		Collections: []string{"lists", "templates", "singlesends", "mc_lists"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sum.Failed, ",") != "singlesends,templates" {
		t.Fatalf("failed = %v", sum.Failed)
	}
	for _, r := range sum.Results {
		if r.Collection == "templates" {
			if !errors.Is(r.Err(), sendgrid.ErrUnauthorized) || !strings.Contains(r.Hint, "templates.read") || !strings.Contains(r.Hint, "curl") {
				t.Errorf("templates: err %v hint %q", r.Err(), r.Hint)
			}
			if strings.Contains(r.Error+r.Hint, key) {
				t.Error("the API key is in the error")
			}
		}
	}
	rows, complete := snapshots(t, root)
	if rows["lists"] != 3 || rows["mc_lists"] != 5 || complete["templates"] != 0 || complete["singlesends"] != 0 {
		t.Fatalf("rows %v complete %v", rows, complete)
	}
}

func TestServerThatPagesForever(t *testing.T) {
	api := newFakeAPI(t)
	api.foreverNext = true
	c, _ := api.client(t)
	root := t.TempDir()
	sum, err := Run(context.Background(), Options{Spool: spool.Dir{Root: root}, Node: "t", Client: c, Collections: []string{"mc_lists"}, MaxPages: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Failed) != 1 || !errors.Is(sum.Results[0].Err(), ErrEndlessPaging) {
		t.Fatalf("result %+v", sum.Results[0])
	}
	if api.calls["/v3/marketing/lists"] > 51 {
		t.Fatalf("%d requests before giving up", api.calls["/v3/marketing/lists"])
	}
	// Nothing of the unfinished snapshot reached the spool.
	if rows, complete := snapshots(t, root); rows["mc_lists"] != 0 || complete["mc_lists"] != 0 {
		t.Fatalf("unfinished snapshot left %v rows", rows)
	}
}

func TestUnknownCollectionAndBadKey(t *testing.T) {
	api := newFakeAPI(t)
	c, _ := api.client(t)
	if _, err := Run(context.Background(), Options{Spool: spool.Dir{Root: t.TempDir()}, Client: c, Collections: []string{"nope"}}); !errors.Is(err, ErrUnknownCollection) {
		t.Fatalf("err = %v", err)
	}
	bad, _ := sendgrid.New(api.srv.URL, "SG.wrong", "", nil)
	sum, err := Run(context.Background(), Options{Spool: spool.Dir{Root: t.TempDir()}, Client: bad, Collections: []string{"lists"}})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(sum.Results[0].Err(), sendgrid.ErrUnauthorized) || sum.Results[0].Hint == "" {
		t.Fatalf("bad key: %+v", sum.Results[0])
	}
}

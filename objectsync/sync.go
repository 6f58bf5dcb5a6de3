// Package snapshot is sgload sync: it pulls SendGrid's objects (lists,
// segments, contacts, campaigns, single sends, suppressions, templates, ...)
// through the API and writes each collection's snapshot into the spool, for
// flush to turn into tables with _sequence, _sync_id and _synced_at.
//
// A snapshot is atomic: its segment appears in the spool only when every
// page has arrived, closed by a record saying it is complete, so a failed
// or interrupted sync never makes objects look deleted.
package objectsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/sendgrid"
	"github.com/sgload/sgload/spool"
)

// source is how one collection is read from the API.
type source struct {
	fetch fetcher
	// scope is the API key permission it needs (for the error hint).
	scope string
}

var sources = map[string]source{
	"lists":                     {single("/v3/contactdb/lists", "lists", nil), "marketing_campaigns.read"},
	"segments":                  {single("/v3/contactdb/segments", "segments", nil), "marketing_campaigns.read"},
	"recipients":                {numberedPages("/v3/contactdb/recipients", "recipients", 1000), "marketing_campaigns.read"},
	"campaigns":                 {offsetPages("/v3/campaigns", "result", 100, false), "marketing_campaigns.read"},
	"mc_lists":                  {tokenPages("/v3/marketing/lists", "result", url.Values{"page_size": {"1000"}}), "marketing.read"},
	"mc_segments":               {single("/v3/marketing/segments/2.0", "results", nil), "marketing.read"},
	"mc_contacts":               {contactsExport, "marketing.read"},
	"singlesends":               {tokenPages("/v3/marketing/singlesends", "result", url.Values{"page_size": {"100"}}), "marketing.read"},
	"field_definitions":         {fieldDefinitions, "marketing.read"},
	"bounces":                   {offsetPages("/v3/suppression/bounces", "", 500, true), "suppression.read"},
	"blocks":                    {offsetPages("/v3/suppression/blocks", "", 500, true), "suppression.read"},
	"spam_reports":              {offsetPages("/v3/suppression/spam_reports", "", 500, true), "suppression.read"},
	"invalid_emails":            {offsetPages("/v3/suppression/invalid_emails", "", 500, true), "suppression.read"},
	"global_unsubscribes":       {offsetPages("/v3/suppression/unsubscribes", "", 500, true), "suppression.read"},
	"unsubscribe_groups":        {single("/v3/asm/groups", "", nil), "asm.groups.read"},
	"unsubscribe_group_members": {groupMembers, "asm.groups.read"},
	"templates":                 {tokenPages("/v3/templates", "result", url.Values{"generations": {"legacy,dynamic"}, "page_size": {"200"}}), "templates.read"},
	"messages":                  {activityMessages(1000), "email_activity.read"},
}

// Options configure a sync.
type Options struct {
	Spool  spool.Dir
	Node   string
	Client *sendgrid.Client
	// Collections to sync; empty means all.
	Collections []string
	// FullRefresh pulls incremental collections in full too, which is how
	// their deletions become visible (weekly is plenty).
	FullRefresh bool
	// Lookback widens an incremental pull's window back from the last
	// sync's start (default 24 h), for late-arriving records.
	Lookback time.Duration
	// MaxPages guards against a server that never stops paging (100000).
	MaxPages int
	// Parallel collections at once (default 2).
	Parallel int
	// PollInterval and ExportWait pace the contacts export job (5 s, 1 h).
	PollInterval time.Duration
	ExportWait   time.Duration
	Logger       *slog.Logger
	Progress     func(Progress)
	Now          func() time.Time
}

// Progress reports a collection's advance.
type Progress struct {
	Collection string
	Pages      int
	Rows       int
	Done       bool
}

// Result is what happened to one collection.
type Result struct {
	Collection string        `json:"collection"`
	Mode       schema.Mode   `json:"mode"`
	SyncID     string        `json:"sync_id,omitempty"`
	Rows       int           `json:"rows"`
	Pages      int           `json:"pages"`
	Duration   time.Duration `json:"-"`
	Seconds    float64       `json:"seconds"`
	Error      string        `json:"error,omitempty"`
	// Hint says what to do about Error.
	Hint string `json:"hint,omitempty"`
	err  error
}

// Err is the collection's error, nil when it succeeded.
func (r *Result) Err() error { return r.err }

// Summary is a sync run.
type Summary struct {
	Results []*Result `json:"collections"`
	Failed  []string  `json:"failed"`
}

// ErrUnknownCollection names a collection sgload does not have.
var ErrUnknownCollection = errors.New("unknown collection")

// Run syncs the collections, in parallel, into the spool. One failing
// collection does not stop the others; Summary.Failed names the ones that
// failed.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lookback <= 0 {
		o.Lookback = 24 * time.Hour
	}
	if o.MaxPages <= 0 {
		o.MaxPages = 100000
	}
	if o.Parallel <= 0 {
		o.Parallel = 2
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 5 * time.Second
	}
	if o.ExportWait <= 0 {
		o.ExportWait = time.Hour
	}
	names := o.Collections
	if len(names) == 0 {
		names = schema.CollectionNames()
	}
	for _, n := range names {
		if _, ok := sources[n]; !ok {
			return nil, fmt.Errorf("%w %q; the collections are %s", ErrUnknownCollection, n, strings.Join(schema.CollectionNames(), ", "))
		}
	}
	l := o.Spool
	lock, err := l.Lock(spool.LockSync)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	node, err := l.Node(o.Node)
	if err != nil {
		return nil, err
	}
	seq, err := spool.OpenSequencer(l.SyncSequenceFile(), o.Now)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		// Unfinished snapshots of a sync that was killed; a missing folder
		// has none.
		if _, err := durable.Sweep(l.Objects(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}

	sum := &Summary{Results: []*Result{}, Failed: []string{}}
	var mu sync.Mutex
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r := syncOne(ctx, o, l, node, seq, name)
			mu.Lock()
			sum.Results = append(sum.Results, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(sum.Results, func(i, j int) bool { return sum.Results[i].Collection < sum.Results[j].Collection })
	for _, r := range sum.Results {
		if r.err != nil {
			sum.Failed = append(sum.Failed, r.Collection)
		}
	}
	if err := seq.Save(); err != nil {
		return sum, err
	}
	return sum, ctx.Err()
}

func syncOne(ctx context.Context, o Options, l spool.Dir, node string, seq *spool.Sequencer, name string) *Result {
	c := schema.Collections[name]
	src := sources[name]
	start := o.Now()
	r := &Result{Collection: name, Mode: schema.Full}
	defer func() {
		r.Duration = o.Now().Sub(start)
		r.Seconds = r.Duration.Seconds()
		if r.err != nil {
			r.Error = r.err.Error()
			if errors.Is(r.err, sendgrid.ErrUnauthorized) {
				r.Hint = fmt.Sprintf("the API key needs the %s scope; test it with: curl -s -H \"Authorization: Bearer $SENDGRID_API_KEY\" https://api.sendgrid.com/v3/scopes", src.scope)
			}
			o.Logger.Error("collection failed; the others go on", "collection", name, "err", r.err)
		} else {
			o.Logger.Info("collection synced", "collection", name, "mode", r.Mode, "rows", r.Rows, "pages", r.Pages, "seconds", r.Seconds)
		}
		if o.Progress != nil {
			o.Progress(Progress{Collection: name, Pages: r.Pages, Rows: r.Rows, Done: true})
		}
	}()
	cur, err := readCursor(l, name)
	if err != nil {
		r.err = err
		return r
	}
	f := &fetch{api: o.Client, maxPages: o.MaxPages, pollInterval: o.PollInterval, exportWait: o.ExportWait}
	if c.Mode == schema.Incremental && !o.FullRefresh && !cur.LastFullStart.IsZero() {
		r.Mode = schema.Incremental
		f.since = cur.LastStart.Add(-o.Lookback)
	}
	first := seq.Reserve(1)
	r.SyncID = schema.SnapshotID(name, node, first)
	w, err := spool.NewSnapshotWriter(l, name, node, first)
	if err != nil {
		r.err = err
		return r
	}
	header := map[string]string{spool.HeaderCollection: name, spool.HeaderSyncID: r.SyncID, spool.HeaderMode: string(r.Mode)}
	err = src.fetch(ctx, f, func(objs [][]byte) error {
		if len(objs) == 0 {
			return nil
		}
		body := append([]byte("["), joinJSON(objs)...)
		body = append(body, ']')
		if err := w.Write(seq.Reserve(len(objs)), o.Now(), header, body, len(objs)); err != nil {
			return err
		}
		r.Rows += len(objs)
		r.Pages = f.pages
		if o.Progress != nil {
			o.Progress(Progress{Collection: name, Pages: f.pages, Rows: r.Rows})
		}
		return nil
	})
	r.Pages = f.pages
	if err == nil {
		done := map[string]any{
			"collection": name, "sync_id": r.SyncID, "mode": r.Mode, "rows": r.Rows, "pages": r.Pages,
			"started_at": start.UTC().Format(time.RFC3339Nano), "finished_at": o.Now().UTC().Format(time.RFC3339Nano),
		}
		if !f.since.IsZero() {
			done["since"] = f.since.UTC().Format(time.RFC3339Nano)
		}
		body, _ := json.Marshal([]any{done})
		h := map[string]string{spool.HeaderCollection: name, spool.HeaderSyncID: r.SyncID, spool.HeaderSnapshot: "complete"}
		if err = w.Write(seq.Reserve(1), o.Now(), h, body, 1); err == nil {
			err = w.Commit()
		}
	}
	if err != nil {
		w.Abort()
		r.err = err
		r.Rows = 0
		return r
	}
	cur.LastStart = start
	if r.Mode == schema.Full {
		cur.LastFullStart = start
	}
	if err := writeCursor(l, name, cur); err != nil {
		r.err = err
	}
	return r
}

func joinJSON(objs [][]byte) []byte {
	n := len(objs)
	for _, o := range objs {
		n += len(o)
	}
	out := make([]byte, 0, n)
	for i, o := range objs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, o...)
	}
	return out
}

// cursor is a collection's sync state.
type cursor struct {
	LastStart     time.Time `json:"last_start"`
	LastFullStart time.Time `json:"last_full_start"`
}

func cursorPath(l spool.Dir, name string) string {
	return filepath.Join(l.SyncCursors(), name+".json")
}

func readCursor(l spool.Dir, name string) (cursor, error) {
	var c cursor
	b, err := os.ReadFile(cursorPath(l, name))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

func writeCursor(l spool.Dir, name string, c cursor) error {
	if err := durable.MkdirAll(filepath.Dir(cursorPath(l, name)), 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(c)
	return durable.WriteFile(cursorPath(l, name), b, 0o644)
}

// Package backfill fetches email events from SendGrid's Email Logs API
// (POST /v3/logs to search messages, GET /v3/logs/{sg_message_id} for a
// message's events, each with its sg_event_id) into the spool, as events
// the next flush loads like the webhook's: history from before sgload was
// installed, and the gaps of an outage longer than SendGrid's 24 hours of
// retries. Each event keeps its own sg_event_id, so the dedupe rule merges
// it with a copy the webhook delivered; its rows say _source = logs_api.
//
// The search returns at most Limit messages and no page token, so the time
// range is searched in windows of message creation time, halved while a
// window comes back full. Events are kept when their own time falls in the
// range asked for; messages created up to Lookback earlier are searched,
// since an open or a click comes days after its message.
package backfill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/sendgrid"
	"github.com/sgload/sgload/spool"
)

// Options configure a backfill.
type Options struct {
	Spool  spool.Dir
	Client *sendgrid.Client
	// Since and Until bound the events' own time, [Since, Until).
	Since, Until time.Time
	// Gaps backfills only the hours of [Since, Until) in which the webhook
	// delivered far fewer events than usual (see FindGaps).
	Gaps bool
	// GapRatio: an hour is a gap when it received fewer events than this
	// times the median hour (0.1).
	GapRatio float64
	// Lookback widens the message search before Since (72 h).
	Lookback time.Duration
	// Window is the first width of a search window (1 h); full windows are
	// halved, down to a second.
	Window time.Duration
	// Limit is the number of messages one search returns at most (1000,
	// the API's maximum).
	Limit int
	// Node is the spool's node id; backfilled records are written as
	// <node>.backfill.
	Node   string
	DryRun bool
	Logger *slog.Logger
	// Progress is told each window searched.
	Progress func(Progress)
	Now      func() time.Time
}

func (o *Options) defaults() {
	if o.GapRatio <= 0 {
		o.GapRatio = 0.1
	}
	if o.Lookback < 0 {
		o.Lookback = 0
	} else if o.Lookback == 0 {
		o.Lookback = 72 * time.Hour
	}
	if o.Window <= 0 {
		o.Window = time.Hour
	}
	if o.Limit <= 0 || o.Limit > 1000 {
		o.Limit = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Progress reports a backfill's advance.
type Progress struct {
	WindowEnd time.Time
	Of        time.Time // the end of the search
	Messages  int
	Events    int
}

// Summary is what a backfill did.
type Summary struct {
	Ranges    []Range `json:"ranges"`
	Windows   int     `json:"windows"`
	Messages  int     `json:"messages"`
	Events    int     `json:"events"`
	Kept      int     `json:"events_in_range"`
	Spooled   int     `json:"events_spooled"`
	Segments  int     `json:"segments"`
	Truncated int     `json:"full_one_second_windows"`
	DryRun    bool    `json:"dry_run"`
	Resumed   bool    `json:"resumed"`
	Seconds   float64 `json:"seconds"`
}

// Range is a span of event time, [From, To).
type Range struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

func (r Range) has(t time.Time) bool { return !t.Before(r.From) && t.Before(r.To) }

// Errors callers branch on.
var (
	// ErrAccess means the key may not read Email Logs: a missing scope, or
	// an account without the Email Logs add-on.
	ErrAccess = errors.New("the API key cannot read Email Logs")
)

// LockBackfill is the spool lock a backfill holds.
const LockBackfill = "backfill"

// Run backfills the events of [Since, Until) (or, with Gaps, of its gaps)
// into the spool. A cursor in state/backfill.json records the windows done,
// so a rerun of the same backfill goes on where a stopped one was.
func Run(ctx context.Context, o Options) (*Summary, error) {
	o.defaults()
	start := o.Now()
	sum := &Summary{DryRun: o.DryRun, Ranges: []Range{}}
	defer func() { sum.Seconds = o.Now().Sub(start).Seconds() }()
	if !o.Since.Before(o.Until) {
		return sum, fmt.Errorf("the range is empty: --since %s is not before --until %s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339))
	}
	lock, err := o.Spool.Lock(LockBackfill)
	if err != nil {
		return sum, err
	}
	defer lock.Unlock()
	node, err := o.Spool.Node(o.Node)
	if err != nil {
		return sum, err
	}
	if err := checkAccess(ctx, o.Client); err != nil {
		return sum, err
	}
	if o.Gaps {
		// The hour under way is not over: never a gap yet.
		until := o.Until
		if h := o.Now().Truncate(time.Hour); until.After(h) {
			until = h
		}
		if sum.Ranges, err = FindGaps(o.Spool, Range{o.Since, until}, o.GapRatio); err != nil {
			return sum, err
		}
	} else {
		sum.Ranges = []Range{{o.Since, o.Until}}
	}
	if len(sum.Ranges) == 0 {
		return sum, nil
	}
	b := &backfiller{o: o, sum: sum, node: backfillNode(node)}
	return sum, b.run(ctx)
}

// backfillNode is the node backfilled records are written under: their own
// sequences never meet serve's.
func backfillNode(node string) string {
	n := node + ".backfill"
	if len(n) > 63 {
		n = node[:63-len(".backfill")] + ".backfill"
	}
	return n
}

// checkAccess makes one small search, so that a key without the scope, or
// an account without the add-on, fails once and at once.
func checkAccess(ctx context.Context, api *sendgrid.Client) error {
	body, _ := json.Marshal(map[string]any{"limit": 1})
	_, err := api.Post(ctx, "/v3/logs", body)
	var apiErr *sendgrid.Error
	switch {
	case errors.Is(err, sendgrid.ErrUnauthorized):
		return fmt.Errorf("%w: %w", ErrAccess, err)
	case errors.As(err, &apiErr) && (apiErr.Status == 404 || apiErr.Status == 402):
		return fmt.Errorf("%w (no Email Logs on this account): %w", ErrAccess, err)
	}
	return err
}

type backfiller struct {
	o    Options
	sum  *Summary
	node string
	seq  *spool.Sequencer
	p    fastjson.Parser
}

// cursor is how far a backfill of ranges got.
type cursor struct {
	Ranges []Range   `json:"ranges"`
	Done   time.Time `json:"searched_until"` // message creation time searched up to
}

func (b *backfiller) cursorPath() string { return filepath.Join(b.o.Spool.State(), "backfill.json") }

func (b *backfiller) run(ctx context.Context) error {
	o := b.o
	from := b.sum.Ranges[0].From.Add(-o.Lookback)
	to := b.sum.Ranges[len(b.sum.Ranges)-1].To
	if now := o.Now(); to.After(now) {
		to = now
	}
	// A rerun of the same backfill starts where the last one stopped.
	if c, err := b.readCursor(); err == nil && rangesEqual(c.Ranges, b.sum.Ranges) && c.Done.After(from) {
		from, b.sum.Resumed = c.Done, true
	}
	if !o.DryRun {
		var err error
		if b.seq, err = spool.OpenSequencer(filepath.Join(o.Spool.State(), "backfill-sequence"), o.Now); err != nil {
			return err
		}
	}
	for w := from; w.Before(to); {
		end := w.Add(o.Window)
		if end.After(to) {
			end = to
		}
		if err := b.window(ctx, w, end); err != nil {
			return err
		}
		if !o.DryRun {
			if err := b.writeCursor(cursor{Ranges: b.sum.Ranges, Done: end}); err != nil {
				return err
			}
		}
		if o.Progress != nil {
			o.Progress(Progress{WindowEnd: end, Of: to, Messages: b.sum.Messages, Events: b.sum.Kept})
		}
		w = end
	}
	if b.seq != nil {
		return b.seq.Save()
	}
	return nil
}

// window backfills the messages created in [from, to), halving the window
// while a search comes back full.
func (b *backfiller) window(ctx context.Context, from, to time.Time) error {
	msgs, err := b.search(ctx, from, to)
	if err != nil {
		return err
	}
	if len(msgs) >= b.o.Limit {
		if to.Sub(from) > time.Second {
			mid := from.Add(to.Sub(from) / 2).Truncate(time.Second)
			if !mid.After(from) {
				mid = from.Add(time.Second)
			}
			if err := b.window(ctx, from, mid); err != nil {
				return err
			}
			return b.window(ctx, mid, to)
		}
		b.sum.Truncated++
		b.o.Logger.Warn("a one-second window holds the search limit of messages; some may be missing", "at", from)
	}
	b.sum.Windows++
	var events [][]byte
	for _, id := range msgs {
		evs, err := b.message(ctx, id)
		if err != nil {
			return err
		}
		events = append(events, evs...)
	}
	b.sum.Messages += len(msgs)
	b.sum.Kept += len(events)
	if b.o.DryRun || len(events) == 0 {
		return nil
	}
	return b.spool(events)
}

// search returns the ids of the messages created in [from, to).
func (b *backfiller) search(ctx context.Context, from, to time.Time) ([]string, error) {
	q := fmt.Sprintf(`sg_message_id_created_at >= TIMESTAMP "%s" AND sg_message_id_created_at < TIMESTAMP "%s"`,
		from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	body, _ := json.Marshal(map[string]any{"query": q, "limit": b.o.Limit})
	resp, err := b.o.Client.Post(ctx, "/v3/logs", body)
	if err != nil {
		return nil, fmt.Errorf("search messages from %s to %s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	var r struct {
		Messages []struct {
			ID string `json:"sg_message_id"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("search messages: %w", err)
	}
	ids := make([]string, 0, len(r.Messages))
	seen := map[string]bool{}
	for _, m := range r.Messages {
		if m.ID != "" && !seen[m.ID] {
			seen[m.ID] = true
			ids = append(ids, m.ID)
		}
	}
	return ids, nil
}

// message returns a message's events in the webhook's shape, those whose
// time is in a range asked for.
func (b *backfiller) message(ctx context.Context, id string) ([][]byte, error) {
	resp, err := b.o.Client.Get(ctx, "/v3/logs/"+pathEscape(id), nil)
	var apiErr *sendgrid.Error
	if errors.As(err, &apiErr) && apiErr.Status == 404 {
		return nil, nil // past the retention of Email Logs since the search
	}
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", id, err)
	}
	v, err := b.p.ParseBytes(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", id, err)
	}
	var out [][]byte
	for _, ev := range v.GetArray("events") {
		b.sum.Events++
		raw, at, ok := webhookShape(ev, v)
		if !ok {
			continue
		}
		for _, r := range b.sum.Ranges {
			if r.has(at) {
				out = append(out, raw)
				break
			}
		}
	}
	return out, nil
}

// webhookShape turns an Email Logs event into the webhook's JSON: the same
// fields, with custom args at the top level (the webhook's place for them;
// a custom arg never overrides a field SendGrid set), and the message's
// sg_message_id when the event lacks it.
func webhookShape(ev, msg *fastjson.Value) ([]byte, time.Time, bool) {
	obj, err := ev.Object()
	if err != nil {
		return nil, time.Time{}, false
	}
	ts := ev.GetInt64("timestamp")
	if ts <= 0 {
		return nil, time.Time{}, false
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	n := 0
	member := func(k []byte, val []byte) {
		if n > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(string(k))
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(val)
		n++
	}
	have := map[string]bool{}
	var custom *fastjson.Object
	obj.Visit(func(k []byte, val *fastjson.Value) {
		if string(k) == "custom_args" {
			custom, _ = val.Object()
			return
		}
		have[string(k)] = true
		member(k, val.MarshalTo(nil))
	})
	if !have["sg_message_id"] {
		if id := msg.Get("sg_message_id"); id != nil {
			member([]byte("sg_message_id"), id.MarshalTo(nil))
		}
	}
	if custom != nil {
		custom.Visit(func(k []byte, val *fastjson.Value) {
			if !have[string(k)] {
				member(k, val.MarshalTo(nil))
			}
		})
	}
	buf.WriteByte('}')
	return buf.Bytes(), time.Unix(ts, 0), true
}

// spool writes the events as one segment of records of up to 500 events,
// which appears only whole.
func (b *backfiller) spool(events [][]byte) error {
	const perRecord = 500
	first := b.seq.Reserve(len(events))
	w, err := spool.NewBackfillWriter(b.o.Spool, b.node, first)
	if err != nil {
		return err
	}
	now := b.o.Now()
	for i := 0; i < len(events); i += perRecord {
		chunk := events[i:min(i+perRecord, len(events))]
		body := append(append([]byte("["), bytes.Join(chunk, []byte(","))...), ']')
		hdr := map[string]string{"Content-Type": "application/json", "Sgload-Source": "logs_api"}
		if err := w.Write(first+int64(i), now, hdr, body, len(chunk)); err != nil {
			w.Abort()
			return err
		}
	}
	if err := w.Commit(); err != nil {
		return err
	}
	b.sum.Spooled += len(events)
	b.sum.Segments++
	return nil
}

func (b *backfiller) readCursor() (cursor, error) {
	var c cursor
	data, err := os.ReadFile(b.cursorPath())
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(data, &c)
}

func (b *backfiller) writeCursor(c cursor) error {
	data, _ := json.Marshal(c)
	return durable.WriteFile(b.cursorPath(), data, 0o644)
}

func rangesEqual(a, b []Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].From.Equal(b[i].From) || !a[i].To.Equal(b[i].To) {
			return false
		}
	}
	return true
}

func pathEscape(s string) string {
	return strings.NewReplacer("/", "%2F", "?", "%3F", "#", "%23").Replace(s)
}

// FindGaps returns the hours of r in which the spool received fewer events
// than ratio times the median hour, merged into ranges: an outage. It
// counts by receipt time from the segments the spool still keeps (waiting,
// and committed ones in done/ for --retain); hours before the oldest kept
// record are not judged. Receipt-time gaps are what the webhook did not
// deliver; the events of those hours (and of up to 24 h before, whose
// retries ran out) are what backfill fetches.
func FindGaps(d spool.Dir, r Range, ratio float64) ([]Range, error) {
	counts := map[int64]int{} // hour (Unix seconds / 3600) -> events received
	oldest := int64(-1)
	count := func(path string) error {
		rd, err := spool.OpenReader(path)
		if err != nil {
			return err
		}
		defer rd.Close()
		for {
			rec, err := rd.Next()
			if err != nil {
				if errors.Is(err, spool.ErrCorrupt) {
					continue
				}
				return nil // io.EOF or a torn tail
			}
			if rec.Auth == spool.AuthLogsAPI {
				continue // a backfill's own records are not the webhook's
			}
			h := rec.ReceivedAt.Unix() / 3600
			counts[h] += rec.Events
			if oldest < 0 || h < oldest {
				oldest = h
			}
		}
	}
	segs, err := spool.ListSegments(d.Events(), spool.SealedSuffix)
	if err != nil {
		return nil, err
	}
	open, err := spool.ListSegments(d.Events(), spool.OpenSuffix)
	if err != nil {
		return nil, err
	}
	for _, s := range append(segs, open...) {
		if err := count(s.Path); err != nil {
			return nil, err
		}
	}
	err = d.WalkDone(func(p, rel string, _ os.DirEntry) error {
		if spool.ObjectCollection(rel) != "" {
			return nil
		}
		return count(p)
	})
	if err != nil {
		return nil, err
	}
	if oldest < 0 {
		return nil, errors.New("the spool holds no webhook events to judge gaps by: give --since/--until without --gaps")
	}
	var nonzero []int
	for _, c := range counts {
		nonzero = append(nonzero, c)
	}
	sort.Ints(nonzero)
	median := nonzero[len(nonzero)/2]
	threshold := float64(median) * ratio
	var out []Range
	first := max(r.From.Unix()/3600, oldest)
	for h := first; time.Unix(h*3600, 0).Before(r.To); h++ {
		if float64(counts[h]) >= threshold && counts[h] > 0 {
			continue
		}
		from, to := time.Unix(h*3600, 0).UTC(), time.Unix((h+1)*3600, 0).UTC()
		if n := len(out); n > 0 && out[n-1].To.Equal(from) {
			out[n-1].To = to
			continue
		}
		out = append(out, Range{From: from, To: to})
	}
	return out, nil
}

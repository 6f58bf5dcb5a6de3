// Package status answers "is data flowing?" for one spool: whether serve
// is up, events per second now, the open segment's age, the sealed backlog
// and the age of its oldest event, the last flush commit (and, once the
// bucket has them, the last compaction), follower lags, quarantine, dedupe
// history and free disk. sgload status prints it (text or one JSON line)
// and exits non-zero past thresholds; serve and run show it as an HTML page
// with charts of the last hours (page.go).
//
// Everything here only reads: no lock is taken, no folder is made.
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gocloud.dev/blob"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/dedupe"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/spool"
)

// Options say what to look at.
type Options struct {
	Spool spool.Dir
	// Bucket, when set, is where flush commits: the last manifest of this
	// spool's node under Prefix is read from it.
	Bucket *bucket.Bucket
	Prefix string
	// Node is the node whose manifests count (default: the spool's).
	Node string
	// Addr, when set, is serve's address (host:port or URL): GET /healthz
	// must answer 200 within HealthTimeout (2 s).
	Addr          string
	HealthTimeout time.Duration
	// RateWindow is the window events/s is measured over (5 min).
	RateWindow time.Duration
	// EventRate, when set, gives events/s instead of reading the spool's
	// recent records: serve's page uses its own counter.
	EventRate func() float64
	// Compactions finds the last compaction commit (default Rewrites:
	// the newest compaction's rewrite manifest).
	Compactions CommitFinder
	Now         func() time.Time
}

// CommitFinder finds the latest commit of some kind in a bucket, or nil
// when there is none.
type CommitFinder interface {
	LastCommit(ctx context.Context, b *bucket.Bucket, prefix, node string) (*Commit, error)
}

// Report is the state of one spool at one moment. Every list is [] when
// empty, never null.
type Report struct {
	At    time.Time `json:"at"`
	Spool string    `json:"spool"`
	Node  string    `json:"node"`
	Serve Serve     `json:"serve"`
	// EventsPerSecond is over the last RateWindow.
	EventsPerSecond float64        `json:"events_per_second"`
	RateWindow      float64        `json:"rate_window_seconds"`
	Open            Open           `json:"open_segment"`
	Backlog         Backlog        `json:"backlog"`
	LastFlush       *Commit        `json:"last_flush"`      // null: no bucket given, or nothing committed yet
	LastCompaction  *Commit        `json:"last_compaction"` // null: not known (see Options.Compactions)
	Followers       []Follower     `json:"followers"`
	Quarantine      Quarantine     `json:"quarantine"`
	Dedupe          dedupe.Stats   `json:"dedupe_history"`
	Disk            Disk           `json:"disk"`
	Problems        []string       `json:"problems"`
	Thresholds      map[string]any `json:"thresholds"`
}

// Serve is whether serve runs on this spool.
type Serve struct {
	Up  bool `json:"up"`
	PID int  `json:"pid,omitempty"`
	// Health is "ok", or why GET /healthz failed; "" when no address was given.
	Health string `json:"health,omitempty"`
}

// Open is what serve is writing now.
type Open struct {
	Segments   int     `json:"segments"`
	Bytes      int64   `json:"bytes"`
	AgeSeconds float64 `json:"age_seconds"`
}

// Backlog is what waits for flush: sealed segments (events and object
// snapshots), plus the open segment's events for the oldest age.
type Backlog struct {
	Segments int   `json:"segments"`
	Bytes    int64 `json:"bytes"`
	Events   int64 `json:"events"`
	// Oldest is when the oldest event not yet in the bucket arrived (zero
	// when there is none); OldestAgeSeconds is its age.
	Oldest           time.Time `json:"oldest,omitzero"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
}

// Commit is a commit in the bucket: a flush plan's manifest (or a
// compaction's record).
type Commit struct {
	Key        string    `json:"key"`
	At         time.Time `json:"at"`
	AgeSeconds float64   `json:"age_seconds"`
	Rows       int64     `json:"rows"`
	Events     int64     `json:"events"`
}

// Follower is a cursor's lag: forward, or a raw tee (tee-<host>).
type Follower struct {
	Name  string `json:"name"`
	Bytes int64  `json:"lag_bytes"`
}

// Quarantine is the spool's quarantine folder.
type Quarantine struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Disk is the spool's file system.
type Disk struct {
	FreeBytes uint64 `json:"free_bytes"`
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RateWindow <= 0 {
		o.RateWindow = 5 * time.Minute
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = 2 * time.Second
	}
}

// Collect reads the spool (and the bucket, and serve's /healthz, when
// given) into a Report. Thresholds are not applied: see Check.
func Collect(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	d := o.Spool
	now := o.Now()
	r := &Report{At: now.UTC(), Spool: d.Root, RateWindow: o.RateWindow.Seconds(),
		Followers: []Follower{}, Problems: []string{}, Thresholds: map[string]any{}}
	r.Node = o.Node
	if r.Node == "" {
		if b, err := os.ReadFile(d.NodeFile()); err == nil {
			r.Node = strings.TrimSpace(string(b))
		}
	}

	var err error
	if r.Serve.Up, r.Serve.PID, err = d.Held(spool.LockServe); err != nil {
		return nil, err
	}
	if o.Addr != "" {
		r.Serve.Health = health(ctx, o.Addr, o.HealthTimeout)
	}

	if o.EventRate != nil {
		r.EventsPerSecond = o.EventRate()
	} else {
		n, err := spool.EventsSince(d, now.Add(-o.RateWindow))
		if err != nil {
			return nil, fmt.Errorf("recent events: %w", err)
		}
		r.EventsPerSecond = float64(n) / o.RateWindow.Seconds()
	}

	open, err := d.OpenSegments()
	if err != nil {
		return nil, err
	}
	var oldest int64 // _sequence (Unix µs) of the oldest unflushed record
	for _, s := range open {
		r.Open.Segments++
		r.Open.Bytes += s.Size
		r.Open.AgeSeconds = max(r.Open.AgeSeconds, ageOf(now, s.FirstSeq))
		if s.Size > 0 && (oldest == 0 || s.FirstSeq < oldest) {
			oldest = s.FirstSeq
		}
	}
	sealed, err := d.Sealed()
	if err != nil {
		return nil, err
	}
	for _, s := range sealed {
		_, events, err := spool.Count(s.Path)
		if errors.Is(err, os.ErrNotExist) {
			continue // flushed meanwhile
		}
		if err != nil {
			return nil, err
		}
		r.Backlog.Segments++
		r.Backlog.Bytes += s.Size
		r.Backlog.Events += events
		if oldest == 0 || s.FirstSeq < oldest {
			oldest = s.FirstSeq
		}
	}
	if oldest > 0 {
		r.Backlog.Oldest = time.UnixMicro(oldest).UTC()
		r.Backlog.OldestAgeSeconds = ageOf(now, oldest)
	}

	if o.Bucket != nil {
		if r.LastFlush, err = (Manifests{}).LastCommit(ctx, o.Bucket, o.Prefix, r.Node); err != nil {
			return nil, err
		}
		compactions := o.Compactions
		if compactions == nil {
			compactions = Rewrites{}
		}
		if r.LastCompaction, err = compactions.LastCommit(ctx, o.Bucket, o.Prefix, r.Node); err != nil {
			return nil, err
		}
		for _, c := range []*Commit{r.LastFlush, r.LastCompaction} {
			if c != nil {
				c.AgeSeconds = max(0, now.Sub(c.At).Seconds())
			}
		}
	}

	lags, err := spool.CursorLags(d)
	if err != nil {
		return nil, err
	}
	for _, l := range lags {
		r.Followers = append(r.Followers, Follower{Name: l.Name, Bytes: l.Bytes})
	}
	if r.Quarantine.Files, r.Quarantine.Bytes, err = d.QuarantineUsage(); err != nil {
		return nil, err
	}
	if r.Dedupe, err = dedupeStats(d.DedupeHistory()); err != nil {
		return nil, err
	}
	if r.Disk.FreeBytes, err = d.FreeBytes(); err != nil {
		return nil, err
	}
	return r, nil
}

func ageOf(now time.Time, seqMicros int64) float64 {
	return max(0, now.Sub(time.UnixMicro(seqMicros)).Seconds())
}

// dedupeStats sums every destination's history (state/dedupe/<id>/) and
// the adopted runs of the previous release (…/<id>/legacy/).
func dedupeStats(root string) (dedupe.Stats, error) {
	var total dedupe.Stats
	dirs, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return total, nil
	}
	if err != nil {
		return total, err
	}
	for _, e := range dirs {
		if !e.IsDir() {
			continue
		}
		for _, dir := range []string{filepath.Join(root, e.Name()), filepath.Join(root, e.Name(), "legacy")} {
			st, err := dedupe.ReadStats(dir)
			if err != nil {
				return total, err
			}
			total.Runs += st.Runs
			total.Keys += st.Keys
			total.Bytes += st.Bytes
		}
	}
	return total, nil
}

// health asks serve's GET /healthz.
func health(ctx context.Context, addr string, timeout time.Duration) string {
	u := addr
	if !strings.Contains(u, "://") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "bad address: " + err.Error()
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		u = "http://" + net.JoinHostPort(host, port)
	}
	u = strings.TrimRight(u, "/") + "/healthz"
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return "ok"
}

// Manifests finds the last flush commit: the manifest of the node's latest
// plan (plan ids are the first _sequence in hex, so the last key in name
// order is the latest plan).
type Manifests struct{}

var _ CommitFinder = Manifests{}

// LastCommit lists the node's manifests and reads the last one.
func (Manifests) LastCommit(ctx context.Context, b *bucket.Bucket, prefix, node string) (*Commit, error) {
	if node == "" {
		return nil, nil
	}
	dir := layout.Join(prefix, layout.ManifestsDir, node) + "/"
	it := b.List(&blob.ListOptions{Prefix: dir})
	last := ""
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list manifests in %s: %w", b.URL(), err)
		}
		if strings.HasSuffix(obj.Key, ".json") && obj.Key > last {
			last = obj.Key
		}
	}
	if last == "" {
		return nil, nil
	}
	m, err := layout.ReadManifest(ctx, b, last)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", last, err)
	}
	return &Commit{Key: last, At: m.CreatedAt.UTC(), Rows: m.Rows, Events: m.Events}, nil
}

// Rewrites finds the last compaction: the newest compaction's rewrite
// manifest. Compaction serves the whole destination, so node is not used.
type Rewrites struct{}

var _ CommitFinder = Rewrites{}

// LastCommit reads the newest compaction manifest.
func (Rewrites) LastCommit(ctx context.Context, b *bucket.Bucket, prefix, _ string) (*Commit, error) {
	r, key, err := layout.LatestRewrite(ctx, b, prefix, layout.Compact)
	if err != nil || r == nil {
		return nil, err
	}
	return &Commit{Key: key, At: r.CreatedAt.UTC(), Rows: r.RowsOut}, nil
}

package loader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/dedupe"
	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/spool"
)

// Options configure a flush.
type Options struct {
	Spool  string
	Bucket *blob.Bucket
	// BucketURL is shown in messages and kept in manifests; never used to open.
	BucketURL string
	Prefix    string
	// Node names this spool's objects; empty means the spool's own node id.
	Node string
	// MaxPlanBytes bounds one plan's input (default 256 MiB): memory for
	// dedupe keys grows with it, never with the spool.
	MaxPlanBytes int64
	// TargetFileBytes rolls a Parquet file once its encoded size reaches
	// this (default 256 MiB).
	TargetFileBytes int64
	// RowGroupBytes cuts a row group once its rows take this much memory
	// before encoding (default 8 MiB).
	RowGroupBytes int64
	// MemoryBytes bounds the rows buffered across all partitions (default
	// 32 MiB); past it the largest partition's rows are written out.
	MemoryBytes int64
	// DedupeWindow is how long committed keys stay in the history (72 h).
	DedupeWindow time.Duration
	// Retain keeps committed segments in done/ this long (72 h).
	Retain time.Duration
	// DryRun converts but uploads nothing and changes nothing.
	DryRun bool
	// Workers is the number of goroutines mapping events (default GOMAXPROCS).
	Workers int
	// AfterWrite, when set, runs after each object is written (the file://
	// bucket uses it to fsync what fileblob does not).
	AfterWrite func(ctx context.Context, key string) error
	// Sweep, when set, removes what a crashed write left in the bucket (the
	// file:// bucket's temporary files under prefix). It runs under the
	// spool's lock, so never beside another flush, and not on dry runs.
	Sweep func(prefix string) (int, error)
	// Version goes into manifests.
	Version  string
	Logger   *slog.Logger
	Progress func(Progress)
	// Crash, when set, is called at each step of the protocol with the
	// step's name; an error stops the flush right there. Crash tests use it
	// to kill the process or to stop a flush between two steps.
	Crash func(point string) error
	Now   func() time.Time
}

func (o *Options) defaults() {
	if o.MaxPlanBytes <= 0 {
		o.MaxPlanBytes = 256 << 20
	}
	if o.TargetFileBytes <= 0 {
		o.TargetFileBytes = 256 << 20
	}
	if o.RowGroupBytes <= 0 {
		o.RowGroupBytes = 8 << 20
	}
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = 32 << 20
	}
	if o.DedupeWindow <= 0 {
		o.DedupeWindow = 72 * time.Hour
	}
	if o.Retain <= 0 {
		o.Retain = 72 * time.Hour
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Crash == nil {
		o.Crash = func(string) error { return nil }
	}
	if o.Version == "" {
		o.Version = "dev"
	}
}

// Progress is reported while a flush runs.
type Progress struct {
	Phase      string // "keys" or "convert"
	Plan       int    // 1-based
	Plans      int    // estimated
	BytesDone  int64  // spool bytes through both passes
	BytesTotal int64
	Events     int64
	Elapsed    time.Duration
}

// Summary is what a flush did.
type Summary struct {
	Plans          int                   `json:"plans"`
	Recovered      int                   `json:"recovered_plans"`
	Segments       int                   `json:"segments"`
	SpoolBytes     int64                 `json:"spool_bytes"`
	Events         int64                 `json:"events"`
	Rows           int64                 `json:"rows"`
	Files          int                   `json:"files"`
	Bytes          int64                 `json:"bytes"`
	Tables         map[string]TableStats `json:"tables"`
	Duplicates     int64                 `json:"duplicates"`
	RowsWithErrors int64                 `json:"rows_with_errors"`
	Quarantined    int64                 `json:"quarantined"`
	Duration       time.Duration         `json:"-"`
	Seconds        float64               `json:"seconds"`
	DryRun         bool                  `json:"dry_run"`
	Manifests      []string              `json:"manifests"`
}

// NothingToFlush reports a run that found no sealed segment.
func (s *Summary) NothingToFlush() bool { return s.Plans == 0 && s.Recovered == 0 }

func (s *Summary) add(m *Manifest, key string) {
	s.Segments += len(m.Segments)
	for _, sg := range m.Segments {
		s.SpoolBytes += sg.Bytes
	}
	s.Events += m.Events
	s.Rows += m.Rows
	s.Files += len(m.Files)
	for _, f := range m.Files {
		s.Bytes += f.Bytes
	}
	for t, st := range m.Tables {
		cur := s.Tables[t]
		cur.Rows += st.Rows
		cur.Files += st.Files
		cur.Bytes += st.Bytes
		s.Tables[t] = cur
	}
	s.Duplicates += m.Duplicates.Total()
	s.RowsWithErrors += m.RowsWithErrors
	s.Quarantined += m.QuarantinedEvents + m.QuarantinedLines
	if key != "" {
		s.Manifests = append(s.Manifests, key)
	}
}

// CrashPoints are the steps of the commit protocol at which Options.Crash is
// called, in order.
var CrashPoints = []string{"plan-journaled", "keys-resolved", "uploaded-one", "uploaded",
	"manifest-written", "segment-moved", "plan-finished"}

// Errors a caller branches on.
var (
	ErrBusy      = errors.New("another flush holds this spool's lock")
	ErrPreflight = errors.New("storage preflight failed")
	ErrNoSpool   = errors.New("no spool folder")
)

type flusher struct {
	opts    Options
	log     *slog.Logger
	layout  spool.Layout
	journal journal
	index   *dedupe.Index
	node    string
	sum     *Summary
	start   time.Time

	progressDone  atomic.Int64
	progressTotal int64
	progressPlan  int
	progressPlans int
	events        atomic.Int64
}

// Flush runs the commit protocol until the spool has no sealed segment left.
func Flush(ctx context.Context, opts Options) (*Summary, error) {
	opts.defaults()
	f := &flusher{opts: opts, log: opts.Logger, layout: spool.Layout{Root: opts.Spool}, start: opts.Now(),
		sum: &Summary{Tables: map[string]TableStats{}, DryRun: opts.DryRun}}
	defer func() {
		f.sum.Duration = opts.Now().Sub(f.start)
		f.sum.Seconds = f.sum.Duration.Seconds()
	}()
	// A spool that sync wrote but serve never ran has no events/; a spool
	// that does not exist at all is a mistyped --spool.
	if st, err := os.Stat(opts.Spool); err != nil || !st.IsDir() {
		return f.sum, fmt.Errorf("%w: %s", ErrNoSpool, opts.Spool)
	}
	lock, err := spool.TryLock(f.layout, "flush")
	if err != nil {
		if errors.Is(err, spool.ErrLocked) {
			return f.sum, fmt.Errorf("%w: %v", ErrBusy, err)
		}
		return f.sum, err
	}
	defer lock.Unlock()
	if f.node, err = spool.NodeID(f.layout, opts.Node); err != nil {
		return f.sum, err
	}
	if opts.Sweep != nil && !opts.DryRun {
		n, err := opts.Sweep(opts.Prefix)
		if err != nil {
			return f.sum, fmt.Errorf("sweep temporary files in %s: %w", opts.BucketURL, err)
		}
		if n > 0 {
			f.log.Info("removed temporary files a crashed write left in the bucket folder", "files", n)
		}
	}
	f.journal = journal{dir: filepath.Join(f.layout.State(), "flush")}
	if err := durable.MkdirAll(f.journal.dir, 0o755); err != nil {
		return f.sum, err
	}
	if err := f.preflight(ctx); err != nil {
		return f.sum, err
	}
	closeHistory, err := f.openHistory(ctx)
	if err != nil {
		return f.sum, err
	}
	defer closeHistory()

	// Plans a crash left behind come first: finished if committed, redone if not.
	pending, err := f.journal.pending()
	if err != nil {
		return f.sum, err
	}
	// An unfinished plan's segments stay in events/ until it finishes, so
	// the backlog counts them already.
	total, err := backlog(f.layout)
	if err != nil {
		return f.sum, err
	}
	f.progressTotal = 2 * total
	f.progressPlans = int((total + opts.MaxPlanBytes - 1) / opts.MaxPlanBytes)
	for _, p := range pending {
		if opts.DryRun {
			return f.sum, fmt.Errorf("plan %s from an earlier flush is unfinished; run without --dry-run to finish it", p.ID)
		}
		f.log.Warn("resuming a plan an earlier flush left unfinished", "plan", p.ID, "segments", len(p.Segments))
		if err := f.run(ctx, p, true); err != nil {
			return f.sum, err
		}
		f.sum.Recovered++
	}
	for {
		if err := ctx.Err(); err != nil {
			return f.sum, err
		}
		p, err := nextPlan(f.layout, f.node, opts.MaxPlanBytes, opts.Workers, opts.Now())
		if err != nil {
			return f.sum, err
		}
		if p == nil {
			break
		}
		if err := f.run(ctx, p, false); err != nil {
			return f.sum, err
		}
		f.sum.Plans++
		if opts.DryRun {
			break // nothing moves in a dry run, so the next plan would be the same
		}
		// Merging the history's runs as they accumulate keeps every plan's
		// lookups cheap, however long the backlog.
		if _, err := f.index.Maintain(opts.Now().Add(-opts.DedupeWindow)); err != nil {
			return f.sum, err
		}
	}
	if !opts.DryRun {
		cutoff := opts.Now().Add(-opts.DedupeWindow)
		if st, err := f.index.Maintain(cutoff); err != nil {
			f.log.Warn("maintain dedupe history", "err", err)
		} else if st.Expired > 0 {
			f.log.Info("expired dedupe history", "runs", st.Expired)
		}
		// The previous release's runs that no destination adopted.
		if _, err := dedupe.ExpireLegacy(filepath.Join(f.layout.State(), "dedupe"), cutoff); err != nil {
			f.log.Warn("expire dedupe history", "err", err)
		}
		if n, err := pruneDone(f.layout, opts.Now().Add(-opts.Retain)); err != nil {
			f.log.Warn("prune done segments", "err", err)
		} else if n > 0 {
			f.log.Info("pruned committed segments past retention", "segments", n)
		}
	}
	return f.sum, nil
}

// run executes one plan; redo means it comes from the journal.
func (f *flusher) run(ctx context.Context, p *Plan, redo bool) error {
	f.progressPlan++
	mkey := manifestKey(f.opts.Prefix, p.Node, p.ID)
	if redo {
		m, err := readManifest(ctx, f.opts.Bucket, mkey)
		if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("check manifest %s: %w", mkey, err)
		}
		if err == nil { // the manifest is the commit point
			f.log.Info("plan was committed before the crash; finishing it", "plan", p.ID)
			f.sum.add(m, "")
			return f.finish(ctx, p, m)
		}
		if err := f.undo(ctx, p); err != nil {
			return err
		}
	} else if !f.opts.DryRun {
		if err := f.journal.write(p); err != nil {
			return fmt.Errorf("journal plan: %w", err)
		}
		if err := f.opts.Crash("plan-journaled"); err != nil {
			return err
		}
	}

	keys, err := f.resolveKeys(ctx, p)
	if err != nil {
		return err
	}
	if !f.opts.DryRun {
		if err := f.index.WritePending(p.ID, keys.set, keys.dups, f.opts.Now()); err != nil {
			return err
		}
		if err := f.opts.Crash("keys-resolved"); err != nil {
			return err
		}
	}
	m, err := f.convert(ctx, p, keys)
	if err != nil {
		return err
	}
	if f.opts.DryRun {
		f.sum.add(m, "")
		return nil
	}
	if err := f.opts.Crash("uploaded"); err != nil {
		return err
	}
	if err := writeJSON(ctx, f.opts.Bucket, mkey, m); err != nil {
		return fmt.Errorf("write manifest %s: %w", mkey, err)
	}
	if f.opts.AfterWrite != nil {
		if err := f.opts.AfterWrite(ctx, mkey); err != nil {
			return err
		}
	}
	if err := f.opts.Crash("manifest-written"); err != nil {
		return err
	}
	f.sum.add(m, mkey)
	f.log.Info("plan committed", "plan", p.ID, "manifest", mkey, "rows", m.Rows, "files", len(m.Files),
		"duplicates", m.Duplicates.Total())
	return f.finish(ctx, p, m)
}

// undo removes what an uncommitted attempt of p may have left: every object
// its journal names, its pending dedupe history and its work folder.
func (f *flusher) undo(ctx context.Context, p *Plan) error {
	keys, err := f.journal.intents(p.ID)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := f.opts.Bucket.Delete(ctx, k); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("delete %s left by an uncommitted plan: %w", k, err)
		}
	}
	if len(keys) > 0 {
		f.log.Info("deleted objects of an uncommitted plan before redoing it", "plan", p.ID, "objects", len(keys))
	}
	if err := os.Remove(f.journal.intentsPath(p.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	os.RemoveAll(f.journal.workDir(p.ID))
	return f.index.Abort(p.ID)
}

// finish runs the steps after the commit point; each is idempotent.
func (f *flusher) finish(ctx context.Context, p *Plan, m *Manifest) error {
	if err := f.index.Commit(p.ID); err != nil {
		return err
	}
	now := f.opts.Now()
	for i, s := range p.Segments {
		src := filepath.Join(f.layout.Root, s.Path)
		dst := filepath.Join(f.layout.Done(), s.Path)
		if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
			continue // moved before a crash
		}
		if err := durable.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		// The mtime records when the segment was committed, for --retain.
		os.Chtimes(src, now, now)
		if err := durable.Rename(src, dst); err != nil {
			return fmt.Errorf("move committed segment to done: %w", err)
		}
		if i == 0 {
			if err := f.opts.Crash("segment-moved"); err != nil {
				return err
			}
		}
	}
	if err := f.journal.remove(p.ID); err != nil {
		return fmt.Errorf("remove plan journal: %w", err)
	}
	if err := f.opts.Crash("plan-finished"); err != nil {
		return err
	}
	return nil
}

// preflight writes, reads and deletes a probe object, so that a missing
// bucket or credential fails in a second with a clear message instead of
// after converting a gigabyte.
func (f *flusher) preflight(ctx context.Context) error {
	var rnd [6]byte
	rand.Read(rnd[:])
	key := joinKey(f.opts.Prefix, metaDir, "probe", f.node+"-"+hex.EncodeToString(rnd[:]))
	body := []byte("sgload storage preflight\n")
	step := "write"
	err := f.opts.Bucket.WriteAll(ctx, key, body, nil)
	if err == nil {
		step = "read"
		var got []byte
		if got, err = f.opts.Bucket.ReadAll(ctx, key); err == nil && string(got) != string(body) {
			err = errors.New("read back different bytes")
		}
	}
	if err == nil {
		step = "delete"
		err = f.opts.Bucket.Delete(ctx, key)
	}
	if err != nil {
		return fmt.Errorf("%w: %s %s in %s: %w", ErrPreflight, step, key, f.opts.BucketURL, err)
	}
	return nil
}

func (f *flusher) progress(phase string) {
	if f.opts.Progress == nil {
		return
	}
	f.opts.Progress(Progress{Phase: phase, Plan: f.progressPlan, Plans: max(f.progressPlans, f.progressPlan),
		BytesDone: f.progressDone.Load(), BytesTotal: f.progressTotal, Events: f.events.Load(),
		Elapsed: f.opts.Now().Sub(f.start)})
}

// pruneDone deletes committed segments whose commit is older than cutoff,
// except those a follower (forward, a raw tee) has not passed yet.
func pruneDone(l spool.Layout, cutoff time.Time) (int, error) {
	keepFrom, following, err := spool.OldestCursor(l)
	if err != nil {
		return 0, err
	}
	n := 0
	err = spool.WalkDone(l, func(p, _ string, d os.DirEntry) error {
		inEvents := filepath.Dir(p) == filepath.Join(l.Done(), spool.EventsDir)
		if _, first, ok := spool.ParseSegmentName(d.Name()); ok && following && inEvents && first >= keepFrom {
			return nil // a follower still needs it
		}
		info, err := d.Info()
		if err == nil && info.ModTime().Before(cutoff) {
			if err := os.Remove(p); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

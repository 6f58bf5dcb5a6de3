package loader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/dedupe"
	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/spool"
)

// Options configure a flush.
type Options struct {
	Spool  spool.Dir
	Bucket *bucket.Bucket
	Prefix string
	// Node names this spool's objects; empty means the spool's own node id.
	Node string
	// MaxPlanBytes bounds one plan's input (default 256 MiB): memory for
	// dedupe keys grows with it, never with the spool.
	MaxPlanBytes int64
	// TargetFileBytes rolls a Parquet file once its encoded size reaches
	// this (default 256 MiB).
	TargetFileBytes int64
	// RowGroupRows and RowGroupBytes end a row group at this many rows
	// (default 65,536, as compaction's) or once its rows took this much
	// memory before encoding (default 96 MiB); what a row group holds in
	// memory while it is written is its compressed pages, about a quarter
	// of that, and four or five bytes a row for each column that is mostly
	// null (parquet-go ends such a column's page only at 1 MiB of them).
	// Half DuckDB's 122,880 rows made flush a tenth faster under its heap
	// limit (fewer collections) for 0.25 % more bytes (BENCHMARKS.md).
	RowGroupRows  int
	RowGroupBytes int64
	// DedupeWindow is how long committed keys stay in the history (72 h).
	DedupeWindow time.Duration
	// Retain keeps committed segments in done/ this long (72 h).
	Retain time.Duration
	// DryRun converts but uploads nothing and changes nothing.
	DryRun bool
	// Workers is the number of goroutines mapping events (default GOMAXPROCS).
	Workers int
	// Version goes into manifests.
	Version  string
	Logger   *slog.Logger
	Progress func(Progress)
	// Crash, when set, is called at each step of the protocol; an error
	// stops the flush right there. Crash tests use it to kill the process or
	// to stop a flush between two steps.
	Crash func(Step) error
	Now   func() time.Time
}

func (o *Options) defaults() {
	if o.MaxPlanBytes <= 0 {
		o.MaxPlanBytes = 256 << 20
	}
	if o.TargetFileBytes <= 0 {
		o.TargetFileBytes = 256 << 20
	}
	if o.RowGroupRows <= 0 {
		o.RowGroupRows = 64 << 10
	}
	if o.RowGroupBytes <= 0 {
		o.RowGroupBytes = 96 << 20
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
		o.Crash = func(Step) error { return nil }
	}
	if o.Version == "" {
		o.Version = "dev"
	}
}

// Step names a point of the commit protocol, after the step it names is
// done: where Options.Crash is called, and where the crash tests kill a
// flush.
type Step string

// The protocol's steps, in order.
const (
	StepPlanJournaled   Step = "plan-journaled"   // the plan is in the journal
	StepKeysResolved    Step = "keys-resolved"    // duplicates decided, pending history written
	StepUploadedOne     Step = "uploaded-one"     // the plan's first object is in the bucket
	StepUploaded        Step = "uploaded"         // every object is in the bucket
	StepManifestWritten Step = "manifest-written" // committed
	StepSegmentMoved    Step = "segment-moved"    // the first segment is in done/
	StepPlanFinished    Step = "plan-finished"    // the journal is gone
)

// Steps are the protocol's steps, in order.
var Steps = []Step{StepPlanJournaled, StepKeysResolved, StepUploadedOne, StepUploaded,
	StepManifestWritten, StepSegmentMoved, StepPlanFinished}

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
	Plans          int                          `json:"plans"`
	Recovered      int                          `json:"recovered_plans"`
	Segments       int                          `json:"segments"`
	SpoolBytes     int64                        `json:"spool_bytes"`
	Events         int64                        `json:"events"`
	Rows           int64                        `json:"rows"`
	Files          int                          `json:"files"`
	Bytes          int64                        `json:"bytes"`
	Tables         map[string]layout.TableStats `json:"tables"`
	Duplicates     int64                        `json:"duplicates"`
	RowsWithErrors int64                        `json:"rows_with_errors"`
	Quarantined    int64                        `json:"quarantined"`
	Skipped        int64                        `json:"skipped"`
	Duration       time.Duration                `json:"-"`
	Seconds        float64                      `json:"seconds"`
	DryRun         bool                         `json:"dry_run"`
	Manifests      []string                     `json:"manifests"`
	// OpenEvents and OpenBytes are what waits in serve's open segment when
	// there was nothing to flush: flush takes only sealed segments.
	OpenEvents int64 `json:"open_segment_events"`
	OpenBytes  int64 `json:"open_segment_bytes"`
}

// NothingToFlush reports a run that found no sealed segment.
func (s *Summary) NothingToFlush() bool { return s.Plans == 0 && s.Recovered == 0 }

func (s *Summary) add(m *layout.Manifest, key string) {
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
	s.Skipped += m.Skipped
	if key != "" {
		s.Manifests = append(s.Manifests, key)
	}
}

// Errors callers branch on.
var (
	// ErrPreflight means the bucket failed the write-read-delete probe.
	ErrPreflight = errors.New("storage preflight failed")
	// ErrOtherDestination means an unfinished plan belongs to another
	// destination than the one this run writes to.
	ErrOtherDestination = errors.New("an unfinished plan belongs to another destination")
)

type flusher struct {
	opts    Options
	log     *slog.Logger
	spool   spool.Dir
	journal journal
	index   *dedupe.Index
	node    string
	dest    string // the destination's id
	sum     *Summary
	start   time.Time
	replay  *replaySource // nil for a flush

	progressDone  atomic.Int64
	progressTotal int64
	progressPlan  int
	progressPlans int
	events        atomic.Int64
}

// Flush runs the commit protocol until the spool has no sealed segment left.
func Flush(ctx context.Context, opts Options) (*Summary, error) {
	return run(ctx, opts, nil)
}

func run(ctx context.Context, opts Options, replay *replaySource) (*Summary, error) {
	opts.defaults()
	f := &flusher{opts: opts, log: opts.Logger, spool: opts.Spool, start: opts.Now(), replay: replay,
		sum: &Summary{Tables: map[string]layout.TableStats{}, DryRun: opts.DryRun, Manifests: []string{}}}
	defer func() {
		f.sum.Duration = opts.Now().Sub(f.start)
		f.sum.Seconds = f.sum.Duration.Seconds()
	}()
	lock, err := f.spool.Lock(spool.LockFlush)
	if err != nil {
		return f.sum, err
	}
	defer lock.Unlock()
	if f.node, err = f.spool.Node(opts.Node); err != nil {
		return f.sum, err
	}
	f.journal = journal{dir: f.spool.FlushJournal()}
	if err := durable.MkdirAll(f.journal.dir, 0o755); err != nil {
		return f.sum, err
	}
	if err := f.preflight(ctx); err != nil {
		return f.sum, err
	}
	if !opts.DryRun {
		n, err := opts.Bucket.Sweep(opts.Prefix)
		if err != nil {
			return f.sum, fmt.Errorf("sweep temporary files in %s: %w", opts.Bucket.Redacted(), err)
		}
		if n > 0 {
			f.log.Info("removed temporary files a crashed write left in the bucket folder", "files", n)
		}
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
	_, total, err := f.spool.Backlog()
	if replay != nil {
		total, err = replay.open(f)
	}
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
		if p.Destination != "" && p.Destination != f.dest {
			return f.sum, fmt.Errorf("%w: plan %s writes to destination %s, this run to %s: finish it with the bucket and prefix it began with",
				ErrOtherDestination, p.ID, p.Destination, f.dest)
		}
		if err := f.redo(ctx, p); err != nil {
			return f.sum, err
		}
		f.sum.Recovered++
	}
	for {
		if err := ctx.Err(); err != nil {
			return f.sum, err
		}
		var p *Plan
		if replay != nil {
			p = replay.next(f)
		} else if p, err = nextPlan(f.spool, f.node, opts.MaxPlanBytes, opts.Workers, opts.Now()); err != nil {
			return f.sum, err
		}
		if p == nil {
			break
		}
		p.Destination = f.dest
		if err := f.runPlan(ctx, p); err != nil {
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
		f.tidy()
	}
	if f.sum.NothingToFlush() {
		f.sum.OpenEvents, f.sum.OpenBytes = openSegmentEvents(f.spool)
	}
	return f.sum, nil
}

// openSegmentEvents counts what waits in open segments, for a "nothing to
// flush" that would otherwise puzzle whoever just posted events. A segment
// sealed meanwhile is simply not counted.
func openSegmentEvents(d spool.Dir) (events, bytes int64) {
	segs, _ := d.OpenSegments()
	for _, s := range segs {
		if _, n, err := spool.Count(s.Path); err == nil {
			events += n
			bytes += s.Size
		}
	}
	return events, bytes
}

// tidy drops what has aged out: dedupe history past the window, committed
// segments past retention (not during a replay, which reads them). A
// failure is logged; the next flush tries again.
func (f *flusher) tidy() {
	cutoff := f.opts.Now().Add(-f.opts.DedupeWindow)
	if st, err := f.index.Maintain(cutoff); err != nil {
		f.log.Warn("maintain dedupe history", "err", err)
	} else if st.Expired > 0 {
		f.log.Info("expired dedupe history", "runs", st.Expired)
	}
	// The previous release's runs that no destination adopted.
	if _, err := dedupe.ExpireLegacy(f.spool.DedupeHistory(), cutoff); err != nil {
		f.log.Warn("expire dedupe history", "err", err)
	}
	if f.replay != nil {
		return
	}
	if n, err := f.spool.Prune(f.opts.Now().Add(-f.opts.Retain)); err != nil {
		f.log.Warn("prune done segments", "err", err)
	} else if n > 0 {
		f.log.Info("pruned committed segments past retention", "segments", n)
	}
}

// runPlan takes a new plan through every step.
func (f *flusher) runPlan(ctx context.Context, p *Plan) error {
	f.progressPlan++
	if !f.opts.DryRun {
		if err := f.journal.write(p); err != nil {
			return fmt.Errorf("journal plan: %w", err)
		}
		if err := f.opts.Crash(StepPlanJournaled); err != nil {
			return err
		}
	}
	return f.convertAndCommit(ctx, p)
}

// redo takes a plan found in the journal to its end: a plan with a whole
// manifest whose objects are all there is committed and only finishes; one
// without is undone, then done again. A manifest that is torn, or whose
// objects are not all whole (a power cut on a store that does not write
// atomically), commits nothing: it is deleted and the plan redone, which
// writes the same objects again. The plan's segments are still in events/
// (they move to done/ only after the commit), so nothing is lost.
func (f *flusher) redo(ctx context.Context, p *Plan) error {
	f.progressPlan++
	mkey := layout.ManifestKey(f.opts.Prefix, p.Node, p.ID)
	m, err := layout.ReadManifest(ctx, f.opts.Bucket, mkey)
	switch {
	case err == nil:
		broken, err := f.brokenObject(ctx, m)
		if err != nil {
			return err
		}
		if broken == "" {
			f.log.Info("plan was committed before the crash; finishing it", "plan", p.ID)
			f.sum.add(m, "")
			return f.finish(p)
		}
		if err := f.uncommit(ctx, p, mkey, fmt.Errorf("object %s is missing or not whole", broken)); err != nil {
			return err
		}
	case errors.Is(err, layout.ErrTornManifest):
		if err := f.uncommit(ctx, p, mkey, err); err != nil {
			return err
		}
	case gcerrors.Code(err) != gcerrors.NotFound:
		return fmt.Errorf("check manifest %s: %w", mkey, err)
	}
	if err := f.undo(ctx, p); err != nil {
		return err
	}
	return f.convertAndCommit(ctx, p)
}

// brokenObject returns the key of the first object m lists that is missing
// or not of its committed size, "" when all are whole.
func (f *flusher) brokenObject(ctx context.Context, m *layout.Manifest) (string, error) {
	for _, file := range m.Files {
		a, err := f.opts.Bucket.Attributes(ctx, file.Key)
		if gcerrors.Code(err) == gcerrors.NotFound || (err == nil && a.Size != file.Bytes) {
			return file.Key, nil
		}
		if err != nil {
			return "", fmt.Errorf("check committed object %s: %w", file.Key, err)
		}
	}
	return "", nil
}

// uncommit deletes a manifest that commits nothing (why says why), so that
// no reader takes it for a commit while the plan is redone. A redo is safe
// only while the plan's dedupe keys are still pending: once they are
// history, a redo would drop every event of the plan as a duplicate of
// itself. With the order flush keeps (objects, then the manifest, durable
// before the keys become history) that cannot happen; it can after a power
// cut under a release that fsynced after renaming, and then a human decides.
func (f *flusher) uncommit(ctx context.Context, p *Plan, mkey string, why error) error {
	if !f.index.Pending(p.ID) {
		return fmt.Errorf("plan %s: %w, and its dedupe keys are already history, so a redo would drop its events: "+
			"check the plan's objects with sgload verify, then remove %s to give the plan up", p.ID, why, f.journal.planPath(p.ID))
	}
	f.log.Warn("plan's commit is not whole; deleting its manifest and redoing the plan", "plan", p.ID, "why", why.Error())
	if err := f.opts.Bucket.Delete(ctx, mkey); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("delete manifest %s that commits nothing: %w", mkey, err)
	}
	return nil
}

// convertAndCommit runs a journaled plan's steps: keys, convert and upload,
// commit, finish.
func (f *flusher) convertAndCommit(ctx context.Context, p *Plan) error {
	keys, err := f.keys(ctx, p)
	if err != nil {
		return err
	}
	m, err := f.convert(ctx, p, keys)
	if err != nil {
		return err
	}
	if f.opts.DryRun {
		f.sum.add(m, "")
		return nil
	}
	if err := f.opts.Crash(StepUploaded); err != nil {
		return err
	}
	if err := f.commit(ctx, p, m); err != nil {
		return err
	}
	return f.finish(p)
}

// keys is pass 1: every event's dedupe key, the duplicates decided, the
// kept keys written as the plan's pending history.
func (f *flusher) keys(ctx context.Context, p *Plan) (*keyResult, error) {
	keys, err := f.resolveKeys(ctx, p)
	if err != nil {
		return nil, err
	}
	if f.opts.DryRun {
		return keys, nil
	}
	if err := f.index.WritePending(p.ID, keys.set, keys.dups, f.opts.Now()); err != nil {
		return nil, err
	}
	return keys, f.opts.Crash(StepKeysResolved)
}

// commit writes the manifest: the commit point.
func (f *flusher) commit(ctx context.Context, p *Plan, m *layout.Manifest) error {
	mkey := layout.ManifestKey(f.opts.Prefix, p.Node, p.ID)
	if err := layout.WriteManifest(ctx, f.opts.Bucket, mkey, m); err != nil {
		return err
	}
	if err := f.opts.Crash(StepManifestWritten); err != nil {
		return err
	}
	f.sum.add(m, mkey)
	f.log.Info("plan committed", "plan", p.ID, "manifest", mkey, "rows", m.Rows, "files", len(m.Files),
		"duplicates", m.Duplicates.Total())
	return nil
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
	if err := f.journal.clear(p.ID); err != nil {
		return err
	}
	return f.index.Abort(p.ID)
}

// finish runs the steps after the commit point; each is idempotent.
func (f *flusher) finish(p *Plan) error {
	if err := f.index.Commit(p.ID); err != nil {
		return err
	}
	now := f.opts.Now()
	if p.Replay {
		// The segments stay in done/; the replay's cursor moves past them.
		if err := writeReplayCursor(f.spool, p.Destination, p.Segments[len(p.Segments)-1].Path); err != nil {
			return err
		}
		if err := f.opts.Crash(StepSegmentMoved); err != nil {
			return err
		}
	}
	for i, s := range p.Segments {
		if p.Replay {
			break
		}
		if err := f.spool.Commit(s.Path, now); err != nil {
			return err
		}
		if i == 0 {
			if err := f.opts.Crash(StepSegmentMoved); err != nil {
				return err
			}
		}
	}
	if err := f.journal.remove(p.ID); err != nil {
		return fmt.Errorf("remove plan journal: %w", err)
	}
	return f.opts.Crash(StepPlanFinished)
}

// preflight writes, reads and deletes a probe object, so that a missing
// bucket or credential fails in a second with a clear message instead of
// after converting a gigabyte. A dry run, which must touch nothing, only
// lists the prefix.
func (f *flusher) preflight(ctx context.Context) error {
	if f.opts.DryRun {
		if _, _, err := f.opts.Bucket.ListPage(ctx, blob.FirstPageToken, 1, &blob.ListOptions{Prefix: f.opts.Prefix}); err != nil {
			return fmt.Errorf("%w: list %s: %w", ErrPreflight, f.opts.Bucket.URL(), err)
		}
		return nil
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand does not fail on Linux
	key := layout.ProbeKey(f.opts.Prefix, f.node+"-"+hex.EncodeToString(rnd[:]))
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
		return fmt.Errorf("%w: %s %s in %s: %w", ErrPreflight, step, key, f.opts.Bucket.Redacted(), err)
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

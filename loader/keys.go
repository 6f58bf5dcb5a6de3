package loader

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/sgload/sgload/dedupe"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool"
)

// keyResult is pass 1's outcome for a plan: the duplicates decided, and
// every row to write sorted by partition into the workers' spill files.
type keyResult struct {
	set      *dedupe.Set
	dups     *dedupe.Result
	segments []layout.ManifestSegment
	spills   []*spillWriter
	workDir  string

	// Counted here, for the manifest: events read (objects too), events and
	// lines quarantined, events a replay's filter left out.
	events, quarEvents, quarLines, skipped int64
	// rawBytes is the JSON spilled, which pass 2's progress is measured in.
	rawBytes int64
}

// close releases the spill files (the work folder goes with the plan).
func (k *keyResult) close() {
	for _, s := range k.spills {
		_ = s.f.Close()
	}
}

// resolveKeys reads every event of p for its dedupe key and its partition
// (in parallel: neither needs order, only ordinals), spills each row, and
// decides which events are duplicates. What pass 2 could not load anyway
// (damaged lines and records, text that is not a JSON object) is
// quarantined here.
func (f *flusher) resolveKeys(ctx context.Context, p *Plan) (res *keyResult, err error) {
	res = &keyResult{set: &dedupe.Set{}, segments: make([]layout.ManifestSegment, len(p.Segments)),
		workDir: f.journal.workDir(p.ID)}
	var planBytes int64
	defer func() {
		if err != nil {
			res.close()
		}
	}()
	for i, s := range p.Segments {
		res.segments[i] = layout.ManifestSegment{Path: s.Path, Bytes: s.Bytes}
		planBytes += s.Bytes
	}
	if err := os.RemoveAll(res.workDir); err != nil {
		return res, fmt.Errorf("work folder: %w", err)
	}
	if err := os.MkdirAll(res.workDir, 0o755); err != nil {
		return res, fmt.Errorf("work folder: %w", err)
	}
	workers := max(f.opts.Workers, 1)
	for w := range workers {
		s, err := newSpillWriter(res.workDir, w)
		if err != nil {
			return res, err
		}
		res.spills = append(res.spills, s)
	}
	// A SendGrid event takes 300 to 500 bytes in the spool: room for the
	// keys up front, once (should events be smaller, the set grows once
	// more). Workers add a record's keys at a time to this one set: a set
	// per worker merged at the end made three times the fresh memory, and
	// faulting it in was 4 % of flush's CPU time.
	res.set.Grow(int(planBytes / 400))
	items := make(chan item, 2*workers)
	bufs := newBodies()
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(items)
		return readPlan(gctx, f.spool.Root, p, bufs, func(it item) error {
			if it.rec != nil {
				res.segments[it.seg].Records++
				res.segments[it.seg].Events += int64(it.rec.Events)
			}
			select {
			case items <- it:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	legacy := f.index.HasLegacy()
	for w := range workers {
		g.Go(func() error {
			k := keyWorker{f: f, p: p, spill: res.spills[w], set: &dedupe.Set{}, legacy: legacy}
			for it := range items {
				if err := k.item(it); err != nil {
					return err
				}
				mu.Lock()
				res.set.Merge(k.set)
				mu.Unlock()
				if it.rec != nil {
					f.progressDone.Add(int64(len(it.rec.Body)))
					f.progress("keys")
					bufs.put(it.rec)
				}
			}
			if err := k.spill.finish(); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			res.events += k.events
			res.quarEvents += k.quarEvents
			res.quarLines += k.quarLines
			res.skipped += k.skipped
			for _, n := range k.spill.raw {
				res.rawBytes += n
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	dups, err := f.index.Resolve(res.set, f.opts.Now().Add(-f.opts.DedupeWindow))
	if err != nil {
		return res, err
	}
	res.dups = dups
	return res, nil
}

// keyWorker is one pass-1 goroutine.
type keyWorker struct {
	f      *flusher
	p      *Plan
	kr     schema.KeyReader
	spill  *spillWriter
	set    *dedupe.Set
	legacy bool
	e      spillEntry

	events, quarEvents, quarLines, skipped int64
}

func (k *keyWorker) item(it item) error {
	if it.corrupt != nil {
		k.quarLines++
		return k.f.quarantine("line", it.corrupt.Err.Error(), it.corrupt.Path, it.corrupt.Line, nil)
	}
	rec := it.rec
	k.e.recv, k.e.node = rec.ReceivedAt.UnixMicro(), []byte(rec.Node)
	if coll := spool.ObjectCollection(k.p.Segments[it.seg].Path); coll != "" {
		return k.objects(it, coll)
	}
	k.events += int64(rec.Events)
	evs, ok := rec.Split()
	if !ok {
		k.quarEvents += int64(rec.Events)
		return k.f.quarantine("record", "body does not hold the record's events", "", rec.Body, rec)
	}
	k.e.extra = nil
	if rec.Auth == spool.AuthLogsAPI {
		k.e.extra = []byte(schema.SourceLogsAPI)
	}
	for i, raw := range evs {
		key, err := k.kr.Key(raw)
		if err != nil {
			k.quarEvents++
			if err := k.f.quarantine("event", err.Error(), "", raw, rec); err != nil {
				return err
			}
			continue
		}
		if !k.p.Filter.keeps(key.Table, key.Time) {
			k.skipped++ // a replay leaves it out: no key, not a duplicate
			continue
		}
		k.set.Add(it.base+i, key.Key)
		if k.legacy {
			k.set.AddLegacy(it.base+i, dedupe.LegacyKey(raw, key.ID))
		}
		k.e.ordinal, k.e.seq, k.e.raw, k.e.email = int64(it.base+i), rec.Sequence+int64(i), raw, key.Email
		part := layout.Partition{Kind: layout.Events, Table: key.Table, Day: eventDay(key.Time, rec)}
		if err := k.spill.add(part, &k.e); err != nil {
			return err
		}
	}
	return nil
}

// objects spills one snapshot record's objects (or, for the record that
// closes a snapshot, its sync_snapshots row). Object rows are versions, not
// events: never duplicates. They are partitioned by the day of the sync.
func (k *keyWorker) objects(it item, coll string) error {
	rec := it.rec
	table := coll
	if rec.Header[spool.HeaderSnapshot] == "complete" {
		table = schema.Snapshots.Name
	}
	objs, ok := rec.Split()
	if !ok {
		// Sync wrote this record whole (CRC-checked); quarantining part of
		// a snapshot would make objects look deleted, so stop instead.
		return fmt.Errorf("%s snapshot record at sequence %d does not hold its %d objects", table, rec.Sequence, rec.Events)
	}
	k.events += int64(len(objs))
	k.e.extra, k.e.email = []byte(rec.Header[spool.HeaderSyncID]), nil
	part := layout.Partition{Kind: layout.Objects, Table: table, Day: eventDay(0, rec)}
	for i, obj := range objs {
		k.e.ordinal, k.e.seq, k.e.raw = int64(it.base+i), rec.Sequence+int64(i), obj
		if err := k.spill.add(part, &k.e); err != nil {
			return err
		}
	}
	return nil
}

package loader

import (
	"context"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/sgload/sgload/dedupe"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool"
)

// keyResult is pass 1's outcome for a plan.
type keyResult struct {
	set      *dedupe.Set
	dups     *dedupe.Result
	segments []layout.ManifestSegment
}

// resolveKeys reads every event of p for its dedupe keys (in parallel: keys
// need no order, only ordinals) and decides which events are duplicates.
func (f *flusher) resolveKeys(ctx context.Context, p *Plan) (*keyResult, error) {
	res := &keyResult{set: &dedupe.Set{}, segments: make([]layout.ManifestSegment, len(p.Segments))}
	for i, s := range p.Segments {
		res.segments[i] = layout.ManifestSegment{Path: s.Path, Bytes: s.Bytes}
	}
	items := make(chan item, 2*f.opts.Workers)
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
	for range f.opts.Workers {
		g.Go(func() error {
			local := &dedupe.Set{}
			var kr schema.KeyReader
			for it := range items {
				if it.rec == nil {
					continue
				}
				if spool.ObjectCollection(p.Segments[it.seg].Path) != "" {
					// Object rows are versions, not events: never duplicates.
				} else if evs, ok := it.rec.Split(); ok {
					for i, raw := range evs {
						k, err := kr.Key(raw)
						if err != nil {
							continue // no key: the conversion quarantines it
						}
						if !p.Filter.keeps(k.Table, k.Time) {
							continue // a replay leaves it out: no key, not a duplicate
						}
						local.Add(it.base+i, k.Key)
						if legacy {
							local.AddLegacy(it.base+i, dedupe.LegacyKey(raw, k.ID))
						}
					}
				}
				f.progressDone.Add(int64(len(it.rec.Body)))
				f.progress("keys")
				bufs.put(it.rec)
			}
			mu.Lock()
			res.set.Merge(local)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	dups, err := f.index.Resolve(res.set, f.opts.Now().Add(-f.opts.DedupeWindow))
	if err != nil {
		return nil, err
	}
	res.dups = dups
	return res, nil
}

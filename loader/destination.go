package loader

import (
	"context"
	"os"
	"path/filepath"

	"github.com/sgload/sgload/dedupe"
	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/layout"
)

// openHistory opens the dedupe history of the flush's destination, named
// by its id (layout.DestinationID). A spool
// written by the release that kept one history per spool has its runs in
// state/dedupe/ itself: they are adopted by the destination they describe,
// the one holding this node's manifests, so an upgrade forgets nothing.
// A dry run into a destination that has no id yet gets an empty history.
func (f *flusher) openHistory(ctx context.Context) (cleanup func(), err error) {
	root := f.spool.DedupeHistory()
	id, err := layout.DestinationID(ctx, f.opts.Bucket, f.opts.Prefix, !f.opts.DryRun, f.opts.Now())
	if err != nil {
		return nil, err
	}
	cleanup = func() {}
	f.dest = id
	dir := filepath.Join(root, id)
	if id == "" {
		if dir, err = os.MkdirTemp(f.journal.dir, "dry-run-history-"); err != nil {
			return nil, err
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
	}
	if f.index, err = dedupe.Open(dir); err != nil {
		cleanup()
		return nil, err
	}
	if f.opts.DryRun {
		return cleanup, nil
	}
	legacy, err := dedupe.LegacyRuns(root)
	if err != nil || len(legacy) == 0 {
		return cleanup, err
	}
	mine, err := layout.HasManifests(ctx, f.opts.Bucket, f.opts.Prefix, f.node)
	if err != nil {
		return cleanup, err
	}
	if mine {
		if err := f.index.Adopt(legacy); err != nil {
			return cleanup, err
		}
		f.log.Info("adopted the dedupe history of the previous release for this destination", "runs", len(legacy))
	}
	return cleanup, durable.SyncDir(root)
}

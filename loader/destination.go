package loader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/dedupe"
	"github.com/sgload/sgload/internal/durable"
)

// A destination (bucket + prefix) names itself with a random id kept in
// the bucket, <prefix>/_sgload/destination.json, written once (only if
// absent) by the first flush. The spool keeps one dedupe history per
// destination id, so the history describes what that destination holds:
// the same prefix reached by another URL shares it, and a new prefix, or a
// prefix whose objects were deleted, starts empty.
type destination struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
}

func destinationKey(prefix string) string { return joinKey(prefix, metaDir, "destination.json") }

// destinationID reads the destination's id, creating it unless create is
// false; "" when there is none and create is false.
func destinationID(ctx context.Context, b *blob.Bucket, prefix string, create bool, now time.Time,
	afterWrite func(context.Context, string) error) (string, error) {
	key := destinationKey(prefix)
	for range 2 {
		data, err := b.ReadAll(ctx, key)
		if err == nil {
			var d destination
			if err := json.Unmarshal(data, &d); err != nil || d.ID == "" {
				return "", fmt.Errorf("destination id %s: not sgload's (%v)", key, err)
			}
			return d.ID, nil
		}
		if gcerrors.Code(err) != gcerrors.NotFound {
			return "", fmt.Errorf("read destination id %s: %w", key, err)
		}
		if !create {
			return "", nil
		}
		var rnd [8]byte
		rand.Read(rnd[:])
		body, _ := json.Marshal(destination{ID: hex.EncodeToString(rnd[:]), CreatedAt: now.UTC()})
		err = b.WriteAll(ctx, key, append(body, '\n'), &blob.WriterOptions{ContentType: "application/json", IfNotExist: true})
		if err == nil && afterWrite != nil {
			err = afterWrite(ctx, key)
		}
		if err != nil && gcerrors.Code(err) != gcerrors.FailedPrecondition {
			return "", fmt.Errorf("write destination id %s: %w", key, err)
		}
		// Written, or another flush wrote it first: read what is there.
	}
	return "", fmt.Errorf("destination id %s: written but not readable", key)
}

// openHistory opens the dedupe history of the flush's destination. A spool
// written by the release that kept one history per spool has its runs in
// state/dedupe/ itself: they are adopted by the destination they describe,
// the one holding this node's manifests, so an upgrade forgets nothing.
// A dry run into a destination that has no id yet gets an empty history.
func (f *flusher) openHistory(ctx context.Context) (cleanup func(), err error) {
	root := filepath.Join(f.layout.State(), "dedupe")
	id, err := destinationID(ctx, f.opts.Bucket, f.opts.Prefix, !f.opts.DryRun, f.opts.Now(), f.opts.AfterWrite)
	if err != nil {
		return nil, err
	}
	cleanup = func() {}
	dir := filepath.Join(root, id)
	if id == "" {
		if dir, err = os.MkdirTemp(f.journal.dir, "dry-run-history-"); err != nil {
			return nil, err
		}
		cleanup = func() { os.RemoveAll(dir) }
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
	mine, err := hasManifests(ctx, f.opts.Bucket, f.opts.Prefix, f.node)
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

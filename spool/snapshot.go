package spool

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sgload/sgload/internal/durable"
)

// Header keys of snapshot records.
const (
	HeaderCollection = "Sgload-Collection"
	HeaderSyncID     = "Sgload-Sync-Id"
	HeaderMode       = "Sgload-Mode"
	// HeaderSnapshot is "complete" on the record that closes a snapshot.
	HeaderSnapshot = "Sgload-Snapshot"
)

// SnapshotWriter writes one collection's snapshot as one segment under
// objects/<collection>/. The segment appears (sealed) only when Commit
// succeeds, and its last record says the snapshot is complete, so flush
// commits a snapshot's rows and its completion together or not at all: a
// sync that fails midway leaves nothing that could make objects look
// deleted.
type SnapshotWriter struct {
	final string
	tmp   string
	f     *os.File
	bw    *bufio.Writer
	node  []byte
}

// NewSnapshotWriter starts the segment for collection, named after its
// first sequence.
func NewSnapshotWriter(d Dir, collection, node string, firstSeq int64) (*SnapshotWriter, error) {
	dir := d.Objects(collection)
	if err := durable.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	final := filepath.Join(dir, SegmentName(node, firstSeq, SealedSuffix))
	tmp := final + durable.TmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("snapshot segment: %w", err)
	}
	quoted := []byte(`"` + node + `"`)
	return &SnapshotWriter{final: final, tmp: tmp, f: f, bw: bufio.NewWriterSize(f, 1<<20), node: quoted}, nil
}

// Write appends a record: body is a JSON array of n objects.
func (w *SnapshotWriter) Write(seq int64, at time.Time, header map[string]string, body []byte, n int) error {
	p, err := Prepare(n, "sync", header, body)
	if err != nil {
		return err
	}
	if _, err := w.bw.Write(appendRecord(nil, seq, at, w.node, p)); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// Commit makes the segment durable and visible to flush.
func (w *SnapshotWriter) Commit() error {
	if err := w.bw.Flush(); err != nil {
		w.Abort()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return fmt.Errorf("fsync snapshot: %w", err)
	}
	if err := w.f.Close(); err != nil {
		_ = os.Remove(w.tmp)
		return err
	}
	return durable.Rename(w.tmp, w.final)
}

// Abort drops the unfinished segment.
func (w *SnapshotWriter) Abort() {
	_ = w.f.Close()
	_ = os.Remove(w.tmp)
}

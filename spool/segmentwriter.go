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

// SegmentWriter writes a whole segment that appears, sealed, only when
// Commit succeeds: sync writes each collection's snapshot as one under
// objects/<collection>/, whose last record says the snapshot is complete,
// so flush commits a snapshot's rows and its completion together or not at
// all (a sync that fails midway leaves nothing that could make objects look
// deleted); backfill writes events fetched from the API as ones in events/.
type SegmentWriter struct {
	final string
	tmp   string
	f     *os.File
	bw    *bufio.Writer
	node  []byte
	auth  string
}

// NewSnapshotWriter starts the segment of a snapshot of collection, named
// after its first sequence.
func NewSnapshotWriter(d Dir, collection, node string, firstSeq int64) (*SegmentWriter, error) {
	return newSegmentWriter(d.Objects(collection), node, firstSeq, "sync")
}

// NewBackfillWriter starts a segment of events fetched from SendGrid's API
// (records authenticated as "logs_api"), named after its first sequence;
// node should be the spool's node with ".backfill", so its sequences never
// meet serve's.
func NewBackfillWriter(d Dir, node string, firstSeq int64) (*SegmentWriter, error) {
	return newSegmentWriter(d.Events(), node, firstSeq, AuthLogsAPI)
}

// AuthLogsAPI is the auth of records backfill fetched from the Email Logs
// API rather than received from the webhook.
const AuthLogsAPI = "logs_api"

func newSegmentWriter(dir, node string, firstSeq int64, auth string) (*SegmentWriter, error) {
	if err := durable.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	final := filepath.Join(dir, SegmentName(node, firstSeq, SealedSuffix))
	tmp := final + durable.TmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", final, err)
	}
	quoted := []byte(`"` + node + `"`)
	return &SegmentWriter{final: final, tmp: tmp, f: f, bw: bufio.NewWriterSize(f, 1<<20), node: quoted, auth: auth}, nil
}

// Write appends a record: body is a JSON array of n objects.
func (w *SegmentWriter) Write(seq int64, at time.Time, header map[string]string, body []byte, n int) error {
	p, err := Prepare(n, w.auth, header, body)
	if err != nil {
		return err
	}
	if _, err := w.bw.Write(appendRecord(nil, seq, at, w.node, p)); err != nil {
		return fmt.Errorf("write segment %s: %w", w.tmp, err)
	}
	return nil
}

// Commit makes the segment durable and visible to flush.
func (w *SegmentWriter) Commit() error {
	if err := w.bw.Flush(); err != nil {
		w.Abort()
		return fmt.Errorf("write segment %s: %w", w.tmp, err)
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
func (w *SegmentWriter) Abort() {
	_ = w.f.Close()
	_ = os.Remove(w.tmp)
}

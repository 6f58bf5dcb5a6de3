package status

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	_ "gocloud.dev/blob/fileblob"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/rewrite"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

const sample = "../testdata/events/sample-2000.ndjson"

// filled is a spool holding the sample events in sealed segments, a
// quarantined body and a follower's cursor at the start.
func filled(t *testing.T) (spool.Dir, int64) {
	t.Helper()
	root := t.TempDir()
	lines := spooltest.Lines(t, sample)
	spooltest.Fill(t, root, lines, spooltest.Options{Node: "st", PerPost: 40, SegmentBytes: 128 << 10})
	d := spool.Dir{Root: root}
	if err := os.WriteFile(filepath.Join(d.Quarantine(), "body-0123.json"), []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.Cursors(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Cursors(), "forward.json"), []byte(`{"segment":0,"offset":0}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return d, int64(len(lines))
}

func TestCollectAndCheck(t *testing.T) {
	d, events := filled(t)
	_, backlogBytes, err := d.Backlog()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r, err := Collect(context.Background(), Options{Spool: d, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Node != "st" || r.Serve.Up || r.Backlog.Events != events || r.Backlog.Bytes != backlogBytes || r.Backlog.Segments < 2 {
		t.Fatalf("report: %+v", r)
	}
	if r.Backlog.Oldest.IsZero() || r.Backlog.OldestAgeSeconds > 300 {
		t.Fatalf("oldest %v (%.0fs)", r.Backlog.Oldest, r.Backlog.OldestAgeSeconds)
	}
	if want := float64(events) / 300; r.EventsPerSecond != want {
		t.Fatalf("events/s %v, want %v (every event arrived in the last 5 minutes)", r.EventsPerSecond, want)
	}
	if diff := cmp.Diff([]Follower{{Name: "forward", Bytes: backlogBytes}}, r.Followers); diff != "" {
		t.Fatalf("followers (-want +got):\n%s", diff)
	}
	if r.Quarantine != (Quarantine{Files: 1, Bytes: 8}) || r.Disk.FreeBytes == 0 || r.LastFlush != nil {
		t.Fatalf("report: %+v", r)
	}

	r.Check(Thresholds{ExpectServe: true, MaxBacklogBytes: 1, MaxLagBytes: 1, MaxQuarantineFiles: 0})
	want := []string{"serve is not running", "of sealed segments wait for flush", "follower forward is", "1 file ("}
	if len(r.Problems) != len(want) {
		t.Fatalf("problems %q", r.Problems)
	}
	for i, w := range want {
		if !strings.Contains(r.Problems[i], w) {
			t.Fatalf("problem %d %q, want %q", i, r.Problems[i], w)
		}
	}
	r.Check(Thresholds{MaxQuarantineFiles: -1, MaxBacklogAge: time.Hour})
	if len(r.Problems) != 0 {
		t.Fatalf("problems %q", r.Problems)
	}

	// An hour later, nothing arrived in the window and the backlog is old.
	later := now.Add(time.Hour)
	r, err = Collect(context.Background(), Options{Spool: d, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	r.Check(Thresholds{MaxBacklogAge: 30 * time.Minute, MaxQuarantineFiles: -1})
	if r.EventsPerSecond != 0 || len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "is flush running?") {
		t.Fatalf("events/s %v, problems %q", r.EventsPerSecond, r.Problems)
	}
}

func TestCollectAfterFlush(t *testing.T) {
	d, events := filled(t)
	b, err := bucket.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sum, err := loader.Flush(context.Background(), loader.Options{Spool: d, Bucket: b, Prefix: "sg", MaxPlanBytes: 200 << 10})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Collect(context.Background(), Options{Spool: d, Bucket: b, Prefix: "sg"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Backlog.Segments != 0 || r.Backlog.Events != 0 || !r.Backlog.Oldest.IsZero() {
		t.Fatalf("backlog after flush: %+v", r.Backlog)
	}
	last := sum.Manifests[len(sum.Manifests)-1]
	if r.LastFlush == nil || r.LastFlush.Key != last || r.LastFlush.AgeSeconds > 300 {
		t.Fatalf("last flush %+v, want %s", r.LastFlush, last)
	}
	if r.Dedupe.Runs == 0 || r.Dedupe.Keys == 0 || r.Dedupe.Keys > events || r.Dedupe.Bytes == 0 {
		t.Fatalf("dedupe history %+v", r.Dedupe)
	}
	// The follower still needs every segment flush moved to done/.
	if len(r.Followers) != 1 || r.Followers[0].Bytes == 0 {
		t.Fatalf("followers %+v", r.Followers)
	}
	r.Check(Thresholds{MaxFlushAge: time.Hour, MaxQuarantineFiles: -1})
	if len(r.Problems) != 0 {
		t.Fatalf("problems %q", r.Problems)
	}
	r.Check(Thresholds{MaxFlushAge: time.Nanosecond, MaxQuarantineFiles: -1})
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "last flush commit") {
		t.Fatalf("problems %q", r.Problems)
	}

	if r.LastCompaction != nil {
		t.Fatalf("last compaction %+v before any", r.LastCompaction)
	}
	// Grace 0: the rewrite finishes at once, its manifest moves to done/.
	csum, err := rewrite.Compact(context.Background(), rewrite.Options{Bucket: b, Prefix: "sg", WorkDir: t.TempDir(),
		Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil || len(csum.Rewrites) == 0 {
		t.Fatalf("compact: %v, %+v", err, csum)
	}
	r, err = Collect(context.Background(), Options{Spool: d, Bucket: b, Prefix: "sg"})
	if err != nil {
		t.Fatal(err)
	}
	newest := path.Base(csum.Rewrites[len(csum.Rewrites)-1])
	if r.LastCompaction == nil || !strings.Contains(r.LastCompaction.Key, newest) || r.LastCompaction.Rows == 0 {
		t.Fatalf("last compaction %+v, want the rewrite %s", r.LastCompaction, newest)
	}
}

func TestServeUpAndHealth(t *testing.T) {
	root := t.TempDir()
	w, err := spool.OpenWriter(root, spool.Options{Node: "up", MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Collect(context.Background(), Options{Spool: w.Dir(), Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Serve.Up || r.Serve.PID != os.Getpid() || !strings.HasPrefix(r.Serve.Health, "unreachable") {
		t.Fatalf("serve %+v", r.Serve)
	}
	// Asking did not take the lock from its holder.
	if _, err := w.Dir().Lock(spool.LockServe); err == nil {
		t.Fatal("the serve lock is free while the writer runs")
	}
}

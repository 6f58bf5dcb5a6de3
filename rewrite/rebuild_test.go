package rewrite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// allRows returns every row of the tables under prefix/dir (events or
// objects) as text, every column, sorted.
func allRows(t *testing.T, b *testbucket.Bucket, prefix, dir string) []string {
	t.Helper()
	mirror := b.Mirror(t, prefix)
	glob := filepath.Join(mirror, prefix, dir, "*", "*", "*.parquet")
	if m, _ := filepath.Glob(glob); len(m) == 0 {
		t.Fatalf("no files under %s", glob)
	}
	db := duckcheck.Open(t)
	var out []string
	for _, r := range duckcheck.Rows(t, db, fmt.Sprintf(`SELECT CAST(COLUMNS(*) AS VARCHAR) FROM read_parquet('%s', hive_partitioning = true, union_by_name = true) ORDER BY ALL`, glob)) {
		out = append(out, fmt.Sprint(r...))
	}
	return out
}

// rebuildFixture flushes events and a contacts snapshot into prefix "old".
func rebuildFixture(t *testing.T) *testbucket.Bucket {
	t.Helper()
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	input := append(spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:700], spooltest.Lines(t, "../testdata/events/drift.ndjson")...)
	spooltest.Fill(t, root, input, spooltest.Options{Node: "n1", PerPost: 30, SegmentBytes: 32 << 10})
	d := spool.Dir{Root: root}
	w, err := spool.NewSnapshotWriter(d, "mc_contacts", "n1", time.Now().UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	w.Write(now.UnixMicro(), now, map[string]string{spool.HeaderCollection: "mc_contacts"},
		[]byte(`[{"id":"c1","email":"a@x.com","created_at":"2026-01-01T00:00:00Z"},{"id":"c2","email":"b@x.com","custom_fields":{"tier":"gold"}}]`), 2)
	w.Write(now.UnixMicro()+5, now, map[string]string{spool.HeaderSnapshot: "complete", spool.HeaderCollection: "mc_contacts", spool.HeaderSyncID: "s1"},
		[]byte(`[{"collection":"mc_contacts","sync_id":"s1","mode":"full","rows":2,"pages":1}]`), 1)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := loader.Flush(context.Background(), loader.Options{Spool: d, Bucket: b.Bucket, Prefix: "old", MaxPlanBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	return b
}

func rebuildOpts(b *testbucket.Bucket) RebuildOptions {
	return RebuildOptions{From: b.Bucket, FromPrefix: "old", To: b.Bucket, ToPrefix: "new", Options: Options{TargetFileBytes: 128 << 10}}
}

// TestRebuildGivesTheFlushedRows: a prefix rebuilt from its own _raw holds
// the very rows the flush wrote, every column, events and objects.
func TestRebuildGivesTheFlushedRows(t *testing.T) {
	b := rebuildFixture(t)
	sum, err := Rebuild(context.Background(), rebuildOpts(b))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Partitions == 0 || sum.Rows == 0 {
		t.Fatalf("rebuilt nothing: %+v", sum)
	}
	for _, dir := range []string{"events", "objects"} {
		if diff := cmp.Diff(allRows(t, b, "old", dir), allRows(t, b, "new", dir)); diff != "" {
			t.Fatalf("%s: rebuilt rows differ (-flushed +rebuilt):\n%s", dir, diff)
		}
	}
	verifyPrefixClean(t, b, "new")
	verifyPrefixClean(t, b, "old")
	again, err := Rebuild(context.Background(), rebuildOpts(b))
	if err != nil || again.Resumed != sum.Partitions || again.Rows != 0 {
		t.Fatalf("a second rebuild: %+v, %v; want every partition already done", again, err)
	}
	same := rebuildOpts(b)
	same.ToPrefix = "old"
	if _, err := Rebuild(context.Background(), same); err == nil {
		t.Fatal("rebuild onto its own source accepted")
	}
}

// TestRebuildCrash stops a rebuild after each step and reruns it.
func TestRebuildCrash(t *testing.T) {
	for _, step := range []Step{StepOutputsUploaded, StepCommitted} {
		t.Run(string(step), func(t *testing.T) {
			b := rebuildFixture(t)
			o := rebuildOpts(b)
			n := 0
			o.Crash = func(s Step) error {
				if s == step {
					if n++; n == 3 { // in the middle of the partitions
						return errCrash
					}
				}
				return nil
			}
			if _, err := Rebuild(context.Background(), o); !errors.Is(err, errCrash) {
				t.Fatalf("rebuild: %v, want the simulated crash", err)
			}
			o.Crash = nil
			if _, err := Rebuild(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(allRows(t, b, "old", "events"), allRows(t, b, "new", "events")); diff != "" {
				t.Fatalf("after the rerun (-flushed +rebuilt):\n%s", diff)
			}
			verifyPrefixClean(t, b, "new")
		})
	}
}

func verifyPrefixClean(t *testing.T, b *testbucket.Bucket, prefix string) {
	t.Helper()
	rep, err := loader.Verify(context.Background(), loader.VerifyOptions{Bucket: b.Bucket, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("verify %s: %v", prefix, rep.Problems)
	}
}

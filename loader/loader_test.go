package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// fillSpool appends the events to the spool at root as webhook POSTs of
// perPost events each and seals them.
func fillSpool(t testing.TB, root string, lines [][]byte, perPost int, segmentBytes int64) {
	spooltest.Fill(t, root, lines, spooltest.Options{Node: "t1", PerPost: perPost, SegmentBytes: segmentBytes})
}

// oracle is what the bucket must hold for a set of input events, computed
// without the loader: one row per distinct event (spooltest.Oracle's rule),
// in a table named after its type.
type oracle struct {
	rows   int64
	tables map[string]int64
	ids    map[string]bool
}

func expect(t testing.TB, lines [][]byte) oracle {
	t.Helper()
	o := oracle{tables: map[string]int64{}, ids: map[string]bool{}}
	seen := map[string]bool{}
	var or spooltest.Oracle
	for _, l := range lines {
		key := or.Key(t, l)
		if strings.HasPrefix(key, "id:") {
			o.ids[strings.SplitN(key, ":", 3)[2]] = true // tables have no colon
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		o.tables[or.Table(t, l)]++
		o.rows++
	}
	return o
}

// checkBucket reads everything flushed into b with DuckDB and compares it
// with the oracle, then runs Verify.
func checkBucket(t *testing.T, b *testbucket.Bucket, prefix, spoolRoot string, want oracle) {
	t.Helper()
	dir := b.Mirror(t, prefix)
	db := duckcheck.Open(t)
	glob := filepath.Join(dir, filepath.FromSlash(prefix), "events", "*", "*", "*.parquet")
	src := fmt.Sprintf("read_parquet('%s', hive_partitioning = true, filename = true)", glob)
	got := map[string]int64{}
	var total int64
	for _, r := range duckcheck.Rows(t, db, "SELECT event_type, count(*) FROM "+src+" GROUP BY 1") {
		got[r[0].(string)] = r[1].(int64)
		total += r[1].(int64)
	}
	if total != want.rows {
		t.Errorf("bucket holds %d rows, want %d (one per distinct event)", total, want.rows)
	}
	for table, n := range want.tables {
		if got[table] != n {
			t.Errorf("table %s: %d rows, want %d", table, got[table], n)
		}
	}
	if dups := duckcheck.Int(t, db, "SELECT count(*) FROM (SELECT sg_event_id FROM "+src+" WHERE sg_event_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1)"); dups != 0 {
		t.Errorf("%d sg_event_ids appear more than once", dups)
	}
	if ids := duckcheck.Int(t, db, "SELECT count(DISTINCT sg_event_id) FROM "+src); ids != int64(len(want.ids)) {
		t.Errorf("%d distinct sg_event_ids, want %d", ids, len(want.ids))
	}
	// Partition keys live in the path only (BigQuery refuses them twice).
	if n := duckcheck.Int(t, db, fmt.Sprintf("SELECT count(*) FROM (DESCRIBE SELECT * FROM read_parquet('%s', hive_partitioning = false)) WHERE column_name IN ('dt', 'event_type')", glob)); n != 0 {
		t.Error("files carry a partition column")
	}
	if want.ids["drift-03"] {
		if n := duckcheck.Int(t, db, "SELECT attempt FROM "+src+" WHERE sg_event_id = 'drift-03'"); n != 5 {
			t.Errorf("drift-03 attempt = %d, want 5", n)
		}
		if d := duckcheck.Rows(t, db, "SELECT dt::VARCHAR FROM "+src+" WHERE sg_event_id = 'drift-03'")[0][0]; d != "2026-01-01" {
			t.Errorf("drift-03 partition %v, want the event's own day", d)
		}
	}
	rep, err := Verify(context.Background(), VerifyOptions{Spool: spool.Dir{Root: spoolRoot}, Bucket: b.Bucket, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Errorf("verify: %s", strings.Join(rep.Problems, "\n"))
	}
	if rep.Rows != want.rows {
		t.Errorf("verify counts %d rows, want %d", rep.Rows, want.rows)
	}
}

func flushOpts(root string, b *testbucket.Bucket, prefix string) Options {
	return Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: prefix,
		MaxPlanBytes: 400 << 10, TargetFileBytes: 64 << 10, RowGroupBytes: 64 << 10, RowGroupRows: 300}
}

var errCrash = errors.New("simulated crash")

// TestBuckets is the bucket conformance suite: the same flush scenarios
// against every kind of bucket, the cloud ones on real local servers.
func TestBuckets(t *testing.T) {
	for _, kind := range testbucket.Kinds {
		t.Run(kind, func(t *testing.T) { runBucketTests(t, kind) })
	}
}

func runBucketTests(t *testing.T, kind string) {
	input := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson", "../testdata/events/drift.ndjson")
	want := expect(t, input)
	// The crash scenarios run on a third of it (still several plans), which
	// keeps the suite quick under the race detector.
	small := append(spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:600], spooltest.Lines(t, "../testdata/events/drift.ndjson")...)
	wantSmall := expect(t, small)
	const prefix = "sendgrid/raw"

	t.Run("flush", func(t *testing.T) {
		b := testbucket.Open(t, kind)
		root := t.TempDir()
		fillSpool(t, root, input, 97, 256<<10)
		sum, err := Flush(context.Background(), flushOpts(root, b, prefix))
		if err != nil {
			t.Fatal(err)
		}
		if sum.Rows != want.rows || sum.Plans < 2 || sum.Files < 20 {
			t.Fatalf("summary %+v; want %d rows over several plans and files", sum, want.rows)
		}
		if sum.Duplicates != int64(len(input))-want.rows {
			t.Errorf("summary counts %d duplicates, want %d", sum.Duplicates, int64(len(input))-want.rows)
		}
		checkBucket(t, b, prefix, root, want)
		// Nothing left: a second run has nothing to do and changes nothing.
		again, err := Flush(context.Background(), flushOpts(root, b, prefix))
		if err != nil || !again.NothingToFlush() {
			t.Fatalf("second flush: %+v, %v", again, err)
		}
	})

	for _, point := range Steps {
		t.Run("rerun after crash at "+string(point), func(t *testing.T) {
			b := testbucket.Open(t, kind)
			root := t.TempDir()
			fillSpool(t, root, small, 40, 96<<10)
			opts := flushOpts(root, b, prefix)
			opts.MaxPlanBytes = 100 << 10
			crashed := 0
			opts.Crash = func(p Step) error {
				if p == point && crashed == 0 {
					crashed++
					return errCrash
				}
				return nil
			}
			if _, err := Flush(context.Background(), opts); !errors.Is(err, errCrash) {
				t.Fatalf("flush: %v, want the simulated crash", err)
			}
			opts.Crash = nil
			sum, err := Flush(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			// After plan-finished the plan is complete; before it, the rerun
			// must find the journaled plan and finish or redo it.
			if wantRecovered := map[bool]int{true: 0, false: 1}[point == StepPlanFinished]; sum.Recovered != wantRecovered {
				t.Errorf("rerun recovered %d plans, want %d", sum.Recovered, wantRecovered)
			}
			checkBucket(t, b, prefix, root, wantSmall)
		})
	}

	t.Run("cancelled write", func(t *testing.T) {
		b := testbucket.Open(t, kind)
		root := t.TempDir()
		fillSpool(t, root, small, 40, 96<<10)
		opts := flushOpts(root, b, prefix)
		opts.MaxPlanBytes = 100 << 10
		ctx, cancel := context.WithCancel(context.Background())
		opts.Crash = func(p Step) error {
			if p == StepUploadedOne {
				cancel() // the plan's other uploads are cut off mid-way
			}
			return nil
		}
		if _, err := Flush(ctx, opts); !errors.Is(err, context.Canceled) {
			t.Fatalf("flush: %v, want context.Canceled", err)
		}
		opts.Crash = nil
		if _, err := Flush(context.Background(), opts); err != nil {
			t.Fatal(err)
		}
		checkBucket(t, b, prefix, root, wantSmall)
	})

	t.Run("list after commit", func(t *testing.T) {
		b := testbucket.Open(t, kind)
		root := t.TempDir()
		fillSpool(t, root, small, 40, 96<<10)
		sum, err := Flush(context.Background(), flushOpts(root, b, prefix))
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, k := range b.Keys(t, prefix+"/") {
			if strings.HasSuffix(k, ".parquet") {
				listed = append(listed, k)
			}
		}
		var committed []string
		for _, mk := range sum.Manifests {
			m, err := layout.ReadManifest(context.Background(), b.Bucket, mk)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range m.Files {
				committed = append(committed, f.Key)
			}
		}
		sort.Strings(committed)
		if strings.Join(listed, "\n") != strings.Join(committed, "\n") {
			t.Fatalf("listed objects differ from the manifests:\nlisted %d: %v\ncommitted %d: %v", len(listed), listed, len(committed), committed)
		}
		for _, k := range b.Keys(t, prefix+"/") {
			if !strings.HasSuffix(k, ".parquet") && !strings.HasSuffix(k, ".json") {
				t.Errorf("unexpected object %s (temporary or side file)", k)
			}
		}
	})

	t.Run("duplicates across flushes", func(t *testing.T) {
		b := testbucket.Open(t, kind)
		root := t.TempDir()
		first, second := input[:1200], input[1000:]
		fillSpool(t, root, first, 50, 1<<20)
		if _, err := Flush(context.Background(), flushOpts(root, b, prefix)); err != nil {
			t.Fatal(err)
		}
		// The second batch repeats 200 events of the first (a SendGrid retry
		// hours later), some with a new sg_event_id.
		retried := make([][]byte, 0, len(second))
		for i, l := range second {
			if i < 50 {
				l = regexp.MustCompile(`"sg_event_id":"[^"]*"`).ReplaceAll(append([]byte(nil), l...), []byte(fmt.Sprintf(`"sg_event_id":"retry-%d"`, i)))
			}
			retried = append(retried, l)
		}
		fillSpool(t, root, retried, 50, 1<<20)
		sum, err := Flush(context.Background(), flushOpts(root, b, prefix))
		if err != nil {
			t.Fatal(err)
		}
		// The 50 repeats under a new id are new events to the rule (SendGrid:
		// the id is unique per event): rows, and ids, of their own.
		w := expect(t, append(append([][]byte{}, first...), retried...))
		if want := int64(len(retried)) - (w.rows - expect(t, first).rows); sum.Duplicates != want || want < 150 {
			t.Errorf("second flush dropped %d duplicates, want %d (the 150 repeats that kept their id, and the input's own)", sum.Duplicates, want)
		}
		checkBucket(t, b, prefix, root, w)
	})
}

func TestDryRunChangesNothing(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	input := spooltest.Lines(t, "../testdata/events/drift.ndjson")
	fillSpool(t, root, input, 5, 1<<20)
	opts := flushOpts(root, b, "p")
	opts.DryRun = true
	sum, err := Flush(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != expect(t, input).rows || !sum.DryRun {
		t.Fatalf("dry run summary %+v", sum)
	}
	if keys := b.Keys(t, ""); len(keys) != 0 {
		t.Fatalf("dry run wrote %v", keys)
	}
	if segs, _ := spool.ListSegments(filepath.Join(root, spool.EventsDir), spool.SealedSuffix); len(segs) == 0 {
		t.Fatal("dry run moved the segments")
	}
}

func TestPreflightFailsClearly(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	fillSpool(t, root, spooltest.Lines(t, "../testdata/events/drift.ndjson"), 5, 1<<20)
	os.RemoveAll(b.Dir)
	os.WriteFile(b.Dir, nil, 0o644) // the bucket folder is now a file: nothing can be written
	_, err := Flush(context.Background(), flushOpts(root, b, "p"))
	if !errors.Is(err, ErrPreflight) {
		t.Fatalf("flush: %v, want ErrPreflight", err)
	}
	if segs, _ := spool.ListSegments(filepath.Join(root, spool.EventsDir), spool.SealedSuffix); len(segs) == 0 {
		t.Fatal("segments moved although nothing was written")
	}
}

// TestSweepOnlyUnderTheLock: the file:// bucket's temporary-file sweep
// would delete a running flush's half-written objects, so it runs only when
// this flush holds the spool's lock, and never on a dry run.
func TestSweepOnlyUnderTheLock(t *testing.T) {
	root := t.TempDir()
	fillSpool(t, root, spooltest.Lines(t, "../testdata/events/drift.ndjson"), 5, 1<<20)
	b := testbucket.Open(t, "file")
	opts := flushOpts(root, b, "p")
	leftover := filepath.Join(b.Dir, "p", "events", "event_type=open", "dt=2026-01-01", "part-x-0001-0000.parquet.5f3a.tmp")
	if err := os.MkdirAll(filepath.Dir(leftover), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leftover, []byte("half an object"), 0o644); err != nil {
		t.Fatal(err)
	}
	swept := func() bool { _, err := os.Stat(leftover); return errors.Is(err, os.ErrNotExist) }

	lock, err := spool.Dir{Root: root}.Lock(spool.LockFlush)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Flush(context.Background(), opts); !errors.Is(err, spool.ErrBusy) {
		t.Fatalf("flush: %v, want ErrBusy", err)
	}
	lock.Unlock()
	dry := opts
	dry.DryRun = true
	if _, err := Flush(context.Background(), dry); err != nil {
		t.Fatal(err)
	}
	if swept() {
		t.Fatal("swept while another flush held the lock or on a dry run")
	}
	if _, err := Flush(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if !swept() {
		t.Fatal("a flush holding the lock left a temporary file behind")
	}
}

func TestOneFlushAtATime(t *testing.T) {
	root := t.TempDir()
	fillSpool(t, root, spooltest.Lines(t, "../testdata/events/drift.ndjson"), 5, 1<<20)
	lock, err := spool.Dir{Root: root}.Lock(spool.LockFlush)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	b := testbucket.Open(t, "mem")
	if _, err := Flush(context.Background(), flushOpts(root, b, "p")); !errors.Is(err, spool.ErrBusy) {
		t.Fatalf("flush: %v, want ErrBusy", err)
	}
}

func TestRetentionPrunesDone(t *testing.T) {
	b := testbucket.Open(t, "mem")
	root := t.TempDir()
	fillSpool(t, root, spooltest.Lines(t, "../testdata/events/drift.ndjson"), 5, 1<<20)
	opts := flushOpts(root, b, "p")
	if _, err := Flush(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	done, _ := spool.ListSegments(filepath.Join(root, spool.DoneDir, spool.EventsDir), spool.SealedSuffix)
	if len(done) == 0 {
		t.Fatal("no committed segment in done/")
	}
	opts.Now = func() time.Time { return time.Now().Add(73 * time.Hour) }
	if _, err := Flush(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if left, _ := spool.ListSegments(filepath.Join(root, spool.DoneDir, spool.EventsDir), spool.SealedSuffix); len(left) != 0 {
		t.Fatalf("%d segments past retention left in done/", len(left))
	}
}

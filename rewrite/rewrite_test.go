package rewrite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

const prefix = "sg"

// twoNodes flushes overlapping traffic from two nodes into b in many small
// plans (many small files per partition) and returns every event posted.
func twoNodes(t *testing.T, b *testbucket.Bucket) [][]byte {
	t.Helper()
	sample := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:900]
	drift := spooltest.Lines(t, "../testdata/events/drift.ndjson")
	traffic := map[string][][]byte{
		"node-a": append(append([][]byte{}, sample[:600]...), drift...),
		"node-b": sample[400:], // 200 events node-a has too: the same retries reached both
	}
	var all [][]byte
	for _, node := range []string{"node-a", "node-b"} {
		root := t.TempDir()
		spooltest.Fill(t, root, traffic[node], spooltest.Options{Node: node, PerPost: 25, SegmentBytes: 24 << 10})
		_, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: prefix,
			MaxPlanBytes: 40 << 10})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, traffic[node]...)
	}
	return all
}

// viewKeys is what the events view shows: the rule's key of every event
// once (DuckDB over the bucket, dedupe by schema.DedupeSQL), computed
// independently from _raw by spooltest.Oracle; and the raw row count.
func viewKeys(t *testing.T, b *testbucket.Bucket) (keys map[string]int, raw int64) {
	t.Helper()
	dir := b.Mirror(t, prefix)
	glob := filepath.Join(dir, prefix, "events", "*", "*", "*.parquet")
	db := duckcheck.Open(t)
	src := fmt.Sprintf("read_parquet('%s', hive_partitioning = true)", glob)
	q := fmt.Sprintf("SELECT _raw FROM %s QUALIFY ROW_NUMBER() OVER (PARTITION BY event_type, dt, %s ORDER BY _sequence, _node) = 1",
		src, schema.DedupeSQL(func(s string) string { return `"` + s + `"` }))
	var or spooltest.Oracle
	keys = map[string]int{}
	for _, r := range duckcheck.Rows(t, db, q) {
		keys[or.Key(t, []byte(r[0].(string)))]++
	}
	return keys, duckcheck.Int(t, db, "SELECT count(*) FROM "+src)
}

func oracle(t *testing.T, events [][]byte) map[string]int {
	var or spooltest.Oracle
	want := map[string]int{}
	for _, e := range events {
		want[or.Key(t, e)] = 1
	}
	return want
}

func verifyClean(t *testing.T, b *testbucket.Bucket) *loader.VerifyReport {
	t.Helper()
	rep, err := loader.Verify(context.Background(), loader.VerifyOptions{Bucket: b.Bucket, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("verify:\n%s", strings.Join(rep.Problems, "\n"))
	}
	return rep
}

func opts(b *testbucket.Bucket, now time.Time) Options {
	return Options{Bucket: b.Bucket, Prefix: prefix, TargetFileBytes: 96 << 10, RowGroupRows: 100, MinAge: 0,
		Grace: DefaultGrace, WorkDir: "", Now: func() time.Time { return now }}
}

// partitionFiles counts each partition's data files.
func partitionFiles(t *testing.T, b *testbucket.Bucket) map[string][]layout.Object {
	t.Helper()
	files, err := layout.PartitionFiles(context.Background(), b.Bucket, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestCompact is the bucket conformance suite for compaction: every kind of
// bucket, the cloud ones on real local servers.
func TestCompact(t *testing.T) {
	for _, kind := range testbucket.Kinds {
		t.Run(kind, func(t *testing.T) { testCompact(t, kind) })
	}
}

func testCompact(t *testing.T, kind string) {
	b := testbucket.Open(t, kind)
	events := twoNodes(t, b)
	want := oracle(t, events)
	before, rawBefore := viewKeys(t, b)
	if diff := cmp.Diff(want, before); diff != "" {
		t.Fatalf("before compaction the view differs from the rule (-want +got):\n%s", diff)
	}
	filesBefore := partitionFiles(t, b)
	now := time.Now()
	sum, err := Compact(context.Background(), opts(b, now))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Partitions == 0 || sum.FilesAfter >= sum.FilesBefore || sum.Duplicates == 0 {
		t.Fatalf("compaction did little: %+v", sum)
	}
	// During the grace both the inputs and the outputs are there: the view
	// still shows every event once.
	during, rawDuring := viewKeys(t, b)
	if diff := cmp.Diff(want, during); diff != "" {
		t.Fatalf("during the grace the view differs (-want +got):\n%s", diff)
	}
	if rawDuring <= rawBefore {
		t.Fatalf("during the grace events_raw holds %d rows, before %d: the inputs should still be there", rawDuring, rawBefore)
	}
	verifyClean(t, b)
	// After the grace, the next run deletes the inputs.
	after, err := Compact(context.Background(), opts(b, now.Add(DefaultGrace+time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if after.InputsDeleted != sum.FilesBefore {
		t.Fatalf("deleted %d inputs after the grace, want %d", after.InputsDeleted, sum.FilesBefore)
	}
	final, rawAfter := viewKeys(t, b)
	if diff := cmp.Diff(want, final); diff != "" {
		t.Fatalf("after the grace the view differs (-want +got):\n%s", diff)
	}
	if rawAfter != rawBefore-sum.Duplicates {
		t.Fatalf("events_raw holds %d rows after, %d before with %d duplicates removed", rawAfter, rawBefore, sum.Duplicates)
	}
	rep := verifyClean(t, b)
	if rep.Rewrites != sum.Partitions {
		t.Fatalf("verify saw %d rewrites, want %d", rep.Rewrites, sum.Partitions)
	}
	// Few files now: at most ceil(bytes / target) per partition compacted.
	for folder, objs := range partitionFiles(t, b) {
		var bytes int64
		for _, ob := range filesBefore[folder] {
			bytes += ob.Size
		}
		if limit := int((bytes + (96 << 10) - 1) / (96 << 10)); len(objs) > max(limit, 1) && len(filesBefore[folder]) > 1 {
			t.Errorf("%s: %d files after, limit %d (%d bytes before)", folder, len(objs), limit, bytes)
		}
	}
	checkSorted(t, b)
}

// checkSorted: every output is sorted by timestamp, then _sequence.
func checkSorted(t *testing.T, b *testbucket.Bucket) {
	t.Helper()
	dir := b.Mirror(t, prefix)
	files, _ := filepath.Glob(filepath.Join(dir, prefix, "events", "*", "*", "rw-*.parquet"))
	if len(files) == 0 {
		t.Fatal("no rewrite outputs")
	}
	db := duckcheck.Open(t)
	for _, f := range files {
		q := fmt.Sprintf(`SELECT count(*) FROM (SELECT "timestamp" < lag("timestamp") OVER () AS back FROM read_parquet('%s')) WHERE back`, f)
		if n := duckcheck.Int(t, db, q); n != 0 {
			t.Errorf("%s: %d rows out of timestamp order", f, n)
		}
	}
}

var errCrash = errors.New("simulated crash")

// TestCompactCrashAtEveryStep: a compaction stopped after any step, then
// run again (after the lease would have expired), leaves every event once
// and a bucket verify accepts.
func TestCompactCrashAtEveryStep(t *testing.T) {
	for _, step := range Steps {
		t.Run(string(step), func(t *testing.T) {
			b := testbucket.Open(t, "file")
			want := oracle(t, twoNodes(t, b))
			now := time.Now()
			o := opts(b, now)
			o.Grace = 0 // so the deletion steps run in the same pass
			o.Crash = func(s Step) error {
				if s == step {
					return errCrash
				}
				return nil
			}
			if _, err := Compact(context.Background(), o); !errors.Is(err, errCrash) {
				t.Fatalf("compact: %v, want the simulated crash", err)
			}
			o.Crash = nil
			o.Now = func() time.Time { return now.Add(time.Hour) } // the dead holder's lease has expired
			if _, err := Compact(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			got, _ := viewKeys(t, b)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("after the rerun (-want +got):\n%s", diff)
			}
			verifyClean(t, b)
			for folder, objs := range partitionFiles(t, b) {
				var names []string
				for _, ob := range objs {
					names = append(names, filepath.Base(ob.Key))
				}
				sort.Strings(names)
				if len(objs) > 1 && !strings.HasPrefix(names[0], "rw-") {
					t.Errorf("%s not compacted after the rerun: %v", folder, names)
				}
			}
		})
	}
}

// TestLeaseExcludes: a partition leased by a live holder is left alone.
func TestLeaseExcludes(t *testing.T) {
	b := testbucket.Open(t, "file")
	twoNodes(t, b)
	now := time.Now()
	busiest := ""
	for f, objs := range partitionFiles(t, b) {
		if busiest == "" || len(objs) > len(partitionFiles(t, b)[busiest]) {
			busiest = f
		}
	}
	held, err := layout.AcquireLease(context.Background(), b.Bucket, prefix, layout.LeaseName(prefix, busiest), "someone-else", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Compact(context.Background(), opts(b, now))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Leased != 1 {
		t.Fatalf("%d partitions skipped as leased, want 1", sum.Leased)
	}
	if err := held.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sum, err = Compact(context.Background(), opts(b, now)); err != nil || sum.Partitions != 1 {
		t.Fatalf("after release: %+v, %v; want the one partition left", sum, err)
	}
}

// TestRetention retires event partitions older than RetainDays.
func TestRetention(t *testing.T) {
	b := testbucket.Open(t, "file")
	twoNodes(t, b)
	// The sample's events are from 2026-01-01..03; retain 2 days from
	// 2026-01-04 keeps 2026-01-02 and later.
	now := time.Date(2026, 1, 4, 12, 0, 0, 0, time.UTC)
	o := opts(b, now)
	o.RetainDays = 2
	o.Grace = 0
	sum, err := Compact(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Retired == 0 {
		t.Fatal("nothing retired")
	}
	for folder := range partitionFiles(t, b) {
		if _, _, date, _ := layout.ParseFolder(prefix, folder); strings.HasPrefix(folder, prefix+"/events/") && date < "2026-01-02" {
			t.Errorf("%s kept past retention", folder)
		}
	}
	verifyClean(t, b)
}

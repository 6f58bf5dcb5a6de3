package loader

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// rows returns every row under prefix as the typed columns DuckDB reads,
// minus what says when and by which run it was written.
func typedRows(t *testing.T, b *testbucket.Bucket, prefix, where string) []string {
	t.Helper()
	dir := b.Mirror(t, prefix)
	glob := filepath.Join(dir, filepath.FromSlash(prefix), "events", "*", "*", "*.parquet")
	if m, _ := filepath.Glob(glob); len(m) == 0 {
		return nil
	}
	db := duckcheck.Open(t)
	q := fmt.Sprintf(`SELECT CAST(COLUMNS(* EXCLUDE (_received_at)) AS VARCHAR) FROM read_parquet('%s', hive_partitioning = true) %s ORDER BY _raw, _sequence`, glob, where)
	var out []string
	for _, r := range duckcheck.Rows(t, db, q) {
		out = append(out, fmt.Sprint(r...))
	}
	return out
}

func replayFixture(t *testing.T) (*testbucket.Bucket, string) {
	t.Helper()
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	input := append(spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:800], spooltest.Lines(t, "../testdata/events/drift.ndjson")...)
	fillSpool(t, root, input, 40, 64<<10)
	if _, err := Flush(context.Background(), flushOpts(root, b, "a")); err != nil {
		t.Fatal(err)
	}
	return b, root
}

// TestReplay: the committed segments, flushed again into a new prefix, give
// the same rows as the first flush; into a prefix that has them, none.
func TestReplay(t *testing.T) {
	b, root := replayFixture(t)
	sum, err := Replay(context.Background(), flushOpts(root, b, "b"), ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := typedRows(t, b, "a", "")
	if int(sum.Rows) != len(want) {
		t.Fatalf("replay wrote %d rows, the flush %d", sum.Rows, len(want))
	}
	if diff := cmp.Diff(want, typedRows(t, b, "b", "")); diff != "" {
		t.Fatalf("replayed rows differ (-flush +replay):\n%s", diff)
	}
	verifyPrefix(t, b, "b", root)
	// Again: the cursor says it is done.
	again, err := Replay(context.Background(), flushOpts(root, b, "b"), ReplayOptions{})
	if err != nil || !again.NothingToFlush() {
		t.Fatalf("second replay: %+v, %v", again, err)
	}
	// From the start: everything is a duplicate of what "b" holds.
	full, err := Replay(context.Background(), flushOpts(root, b, "b"), ReplayOptions{FromStart: true})
	if err != nil || full.Rows != 0 || full.Duplicates != full.Events {
		t.Fatalf("replay from the start into a prefix that holds it all: %+v, %v", full, err)
	}
	// Into the prefix the spool was flushed to: nothing either.
	back, err := Replay(context.Background(), flushOpts(root, b, "a"), ReplayOptions{})
	if err != nil || back.Rows != 0 {
		t.Fatalf("replay into the original prefix: %+v, %v", back, err)
	}
	verifyPrefix(t, b, "a", root)
}

func TestReplayFilter(t *testing.T) {
	b, root := replayFixture(t)
	since := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	until := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	sum, err := Replay(context.Background(), flushOpts(root, b, "c"), ReplayOptions{Filter: Filter{Since: since, Until: until, Types: []string{"open", "click"}, EventsOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := typedRows(t, b, "a", fmt.Sprintf(`WHERE event_type IN ('open', 'click') AND "timestamp" >= '%s' AND "timestamp" < '%s'`, since.Format(time.RFC3339), until.Format(time.RFC3339)))
	if len(want) == 0 || sum.Skipped == 0 {
		t.Fatalf("the filter keeps %d rows and skips %d: a poor test", len(want), sum.Skipped)
	}
	if diff := cmp.Diff(want, typedRows(t, b, "c", "")); diff != "" {
		t.Fatalf("filtered replay (-want +got):\n%s", diff)
	}
	verifyPrefix(t, b, "c", root)
}

// TestReplayCrashAtEveryStep stops a replay after each step, reruns it,
// and expects the rows of an uninterrupted one.
func TestReplayCrashAtEveryStep(t *testing.T) {
	for _, step := range Steps {
		t.Run(string(step), func(t *testing.T) {
			b, root := replayFixture(t)
			opts := flushOpts(root, b, "r")
			opts.MaxPlanBytes = 100 << 10
			crashed := false
			opts.Crash = func(s Step) error {
				if s == step && !crashed {
					crashed = true
					return errCrash
				}
				return nil
			}
			if _, err := Replay(context.Background(), opts, ReplayOptions{}); !errors.Is(err, errCrash) {
				t.Fatalf("replay: %v, want the simulated crash", err)
			}
			opts.Crash = nil
			if _, err := Replay(context.Background(), opts, ReplayOptions{}); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(typedRows(t, b, "a", ""), typedRows(t, b, "r", "")); diff != "" {
				t.Fatalf("after the rerun (-flush +replay):\n%s", diff)
			}
			verifyPrefix(t, b, "r", root)
		})
	}
}

// TestPlanOfAnotherDestination: a plan left unfinished for one destination
// is not redone into another.
func TestPlanOfAnotherDestination(t *testing.T) {
	b, root := replayFixture(t)
	opts := flushOpts(root, b, "x")
	opts.Crash = func(s Step) error {
		if s == StepUploadedOne {
			return errCrash
		}
		return nil
	}
	if _, err := Replay(context.Background(), opts, ReplayOptions{}); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	if _, err := Flush(context.Background(), flushOpts(root, b, "y")); !errors.Is(err, ErrOtherDestination) {
		t.Fatalf("flush into another prefix: %v, want ErrOtherDestination", err)
	}
	if _, err := Replay(context.Background(), flushOpts(root, b, "x"), ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
}

func verifyPrefix(t *testing.T, b *testbucket.Bucket, prefix, root string) {
	t.Helper()
	rep, err := Verify(context.Background(), VerifyOptions{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("verify %s:\n%s", prefix, strings.Join(rep.Problems, "\n"))
	}
}

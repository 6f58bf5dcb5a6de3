package loader

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// TestTornCommitIsRedone is a power cut on a folder bucket that does not
// write atomically, after a plan's commit: the manifest (or one of its
// objects) is left empty or cut short. The plan's segments are still in
// events/ (flush stopped at manifest-written, before they moved), so the
// next flush must take the commit for what it is, none, and redo the plan,
// ending with every event once. Verify flags the damage before the redo.
func TestTornCommitIsRedone(t *testing.T) {
	small := append(spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:600], spooltest.Lines(t, "../testdata/events/drift.ndjson")...)
	want := expect(t, small)
	const prefix = "p"
	tests := []struct {
		name string
		// tear damages the first plan's commit and returns the file it tore.
		tear func(t *testing.T, b *testbucket.Bucket, m *layout.Manifest, mkey string) string
		size int64
	}{
		{"empty manifest", func(t *testing.T, b *testbucket.Bucket, m *layout.Manifest, mkey string) string { return mkey }, 0},
		{"manifest cut short", func(t *testing.T, b *testbucket.Bucket, m *layout.Manifest, mkey string) string { return mkey }, 40},
		{"data object cut short", func(t *testing.T, b *testbucket.Bucket, m *layout.Manifest, mkey string) string {
			return m.Files[0].Key
		}, 100},
		{"data object empty", func(t *testing.T, b *testbucket.Bucket, m *layout.Manifest, mkey string) string {
			return m.Files[len(m.Files)-1].Key
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := testbucket.Open(t, "file")
			root := t.TempDir()
			fillSpool(t, root, small, 40, 96<<10)
			opts := flushOpts(root, b, prefix)
			opts.MaxPlanBytes = 100 << 10
			var mkey string
			opts.Crash = func(p Step) error {
				if p == StepManifestWritten {
					return errCrash // the power goes right after the commit
				}
				return nil
			}
			if _, err := Flush(context.Background(), opts); !errors.Is(err, errCrash) {
				t.Fatalf("flush: %v, want the simulated crash", err)
			}
			keys, err := layout.ListManifests(context.Background(), b.Bucket, prefix)
			if err != nil || len(keys) != 1 {
				t.Fatalf("manifests %v, %v", keys, err)
			}
			mkey = keys[0]
			m, err := layout.ReadManifest(context.Background(), b.Bucket, mkey)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Files) == 0 {
				t.Fatal("the plan wrote no object")
			}
			// The commit's segments are still in events/: the case that matters.
			for _, s := range m.Segments {
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(s.Path))); err != nil {
					t.Fatalf("segment %s of the commit is not in events/: %v", s.Path, err)
				}
			}
			torn := tc.tear(t, b, m, mkey)
			if err := os.Truncate(filepath.Join(b.Dir, filepath.FromSlash(torn)), tc.size); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(context.Background(), VerifyOptions{Spool: spool.Dir{Root: root}, Bucket: b.Bucket, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(rep.Problems, "\n"), torn) {
				t.Fatalf("verify does not flag %s:\n%s", torn, strings.Join(rep.Problems, "\n"))
			}
			opts.Crash = nil
			sum, err := Flush(context.Background(), opts)
			if err != nil {
				t.Fatalf("flush after the torn commit: %v", err)
			}
			if sum.Recovered != 1 {
				t.Errorf("recovered %d plans, want 1", sum.Recovered)
			}
			checkBucket(t, b, prefix, root, want)
		})
	}
}

// TestTornCommitAfterHistoryIsNotRedone: once a plan's dedupe keys are
// history, a redo would drop its events as duplicates of themselves, so a
// damaged commit then stops flush with an error that says what to do.
func TestTornCommitAfterHistoryIsNotRedone(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	fillSpool(t, root, spooltest.Lines(t, "../testdata/events/drift.ndjson"), 5, 1<<20)
	opts := flushOpts(root, b, "p")
	opts.Crash = func(p Step) error {
		if p == StepSegmentMoved {
			return errCrash
		}
		return nil
	}
	if _, err := Flush(context.Background(), opts); !errors.Is(err, errCrash) {
		t.Fatalf("flush: %v", err)
	}
	keys, _ := layout.ListManifests(context.Background(), b.Bucket, "p")
	if err := os.Truncate(filepath.Join(b.Dir, filepath.FromSlash(keys[0])), 3); err != nil {
		t.Fatal(err)
	}
	opts.Crash = nil
	_, err := Flush(context.Background(), opts)
	if !errors.Is(err, layout.ErrTornManifest) || !strings.Contains(err.Error(), "already history") {
		t.Fatalf("flush: %v, want a refusal to redo", err)
	}
}

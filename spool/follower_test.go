package spool

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// follow reads every record the follower has now, by first sequence.
func follow(t *testing.T, f *Follower) []int64 {
	t.Helper()
	var seqs []int64
	for {
		rec, _, err := f.Next()
		if errors.Is(err, io.EOF) {
			return seqs
		}
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, rec.Sequence)
	}
}

func appendN(t *testing.T, s *Writer, n int) []int64 {
	t.Helper()
	var seqs []int64
	for range n {
		ack, err := s.Append(context.Background(), prep(t, `[{"event":"open"}]`))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.FirstSeq)
	}
	return seqs
}

func equalSeqs(t *testing.T, got, want []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("followed %d records %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("record %d: sequence %d, want %d", i, got[i], want[i])
		}
	}
}

// TestFollowerReadsRecordsWrittenJustBeforeTheSeal: serve appends records
// and seals the open segment after the follower read to its end but before
// it looked whether the segment is sealed. Those records must still be read.
func TestFollowerReadsRecordsWrittenJustBeforeTheSeal(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root, Options{})
	want := appendN(t, s, 3)
	f, err := OpenFollower(Dir{Root: root}, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	once := true
	testHookAtEnd = func() {
		if once {
			once = false
			want = append(want, appendN(t, s, 2)...)
			if err := s.Close(); err != nil { // seals the segment
				t.Fatal(err)
			}
		}
	}
	defer func() { testHookAtEnd = nil }()
	equalSeqs(t, follow(t, f), want)
}

// TestFollowerAcrossSealsDoneAndRestart follows records through a sealed
// segment, the open one, a segment moved to done/ by flush, and a restart
// from the stored cursor.
func TestFollowerAcrossSealsDoneAndRestart(t *testing.T) {
	root := t.TempDir()
	l := Dir{Root: root}
	s := openTest(t, root, Options{SegmentBytes: 1})
	want := appendN(t, s, 2) // one sealed segment each
	s.Close()
	s = openTest(t, root, Options{})
	want = append(want, appendN(t, s, 2)...) // in the open segment

	f, err := OpenFollower(l, "t")
	if err != nil {
		t.Fatal(err)
	}
	got := follow(t, f)
	equalSeqs(t, got, want)
	if err := f.Commit(f.Position()); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Flush moves the sealed segments to done/; new records arrive.
	segs, err := ListSegments(l.Events(), SealedSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(l.Done(), EventsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sg := range segs {
		if err := os.Rename(sg.Path, filepath.Join(l.Done(), EventsDir, filepath.Base(sg.Path))); err != nil {
			t.Fatal(err)
		}
	}
	more := appendN(t, s, 2)
	s.Close()

	f, err = OpenFollower(l, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	equalSeqs(t, follow(t, f), more)
	if lag, err := f.Lag(); err != nil || lag == 0 {
		t.Fatalf("lag %d, %v before the cursor is stored; want the unstored records", lag, err)
	}
	if err := f.Commit(f.Position()); err != nil {
		t.Fatal(err)
	}
	if lag, err := f.Lag(); err != nil || lag != 0 {
		t.Fatalf("lag %d, %v after storing the cursor at the end", lag, err)
	}
}

package loader

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sgload/sgload/dedupe"
	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// post appends events to the spool at root as one webhook POST.
func post(t *testing.T, root string, events ...[]byte) {
	t.Helper()
	spooltest.Fill(t, root, events, spooltest.Options{Node: "t1", PerPost: len(events)})
}

// flushAt flushes root into prefix as if the clock said now.
func flushAt(t *testing.T, root string, b *testbucket.Bucket, prefix string, now time.Time) *Summary {
	t.Helper()
	opts := flushOpts(root, b, prefix)
	opts.Now = func() time.Time { return now }
	sum, err := Flush(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// ids returns the sg_event_ids (or "" for none) of the rows under prefix,
// per table, sorted.
func rowsOf(t *testing.T, b *testbucket.Bucket, prefix string) []string {
	t.Helper()
	dir := b.Mirror(t, prefix)
	glob := filepath.Join(dir, filepath.FromSlash(prefix), "events", "*", "*", "*.parquet")
	if m, _ := filepath.Glob(glob); len(m) == 0 {
		return nil
	}
	db := duckcheck.Open(t)
	var out []string
	for _, r := range duckcheck.Rows(t, db, "SELECT event_type || '/' || coalesce(sg_event_id, '') || '/' || coalesce(email, '') FROM read_parquet('"+glob+"', hive_partitioning = true) ORDER BY 1") {
		out = append(out, r[0].(string))
	}
	return out
}

func lines(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, l := range s {
		out[i] = []byte(l)
	}
	return out
}

var day = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestTwinEventsBothKept(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	post(t, root, lines(
		`{"email":"a@x.com","timestamp":1767225600,"event":"open","sg_event_id":"TWIN-A","sg_message_id":"m1"}`,
		`{"email":"a@x.com","timestamp":1767225600,"event":"open","sg_event_id":"TWIN-B","sg_message_id":"m1"}`)...)
	if sum := flushAt(t, root, b, "p", day); sum.Rows != 2 || sum.Duplicates != 0 {
		t.Fatalf("flushed %d rows, %d duplicates; want both opens", sum.Rows, sum.Duplicates)
	}
}

// TestSendGridSamples: SendGrid's documented sample events share one
// sg_event_id across eleven types; they are eleven events. Posted again
// (SendGrid's retry), formatted with spaces and newlines, they are all
// duplicates: the id is read by parsing.
func TestSendGridSamples(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	samples := spooltest.Lines(t, "../testdata/events/sendgrid-samples.ndjson")
	if len(samples) != 11 {
		t.Fatalf("%d samples", len(samples))
	}
	post(t, root, samples...)
	if sum := flushAt(t, root, b, "p", day); sum.Rows != 11 || sum.Duplicates != 0 {
		t.Fatalf("first post: %d rows, %d duplicates; want all 11", sum.Rows, sum.Duplicates)
	}
	spaced := make([][]byte, len(samples))
	for i, s := range samples {
		var buf bytes.Buffer
		if err := json.Indent(&buf, s, "", " "); err != nil {
			t.Fatal(err)
		}
		spaced[i] = buf.Bytes()
	}
	post(t, root, spaced...)
	if sum := flushAt(t, root, b, "p", day.Add(time.Hour)); sum.Rows != 0 || sum.Duplicates != 11 {
		t.Fatalf("re-post with spaces: %d rows, %d duplicates; want all 11 dropped", sum.Rows, sum.Duplicates)
	}
	if n := len(rowsOf(t, b, "p")); n != 11 {
		t.Fatalf("bucket holds %d rows, want 11", n)
	}
}

func TestEventWithoutIDReordered(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	post(t, root, lines(`{"email":"u@x.com","timestamp":1767225600,"event":"group_unsubscribe","asm_group_id":42}`)...)
	post(t, root, lines(`{"asm_group_id":42, "event":"group_unsubscribe", "timestamp":1767225600, "email":"u@x.com"}`)...)
	post(t, root, lines(`{"email":"u@x.com","timestamp":1767225601,"event":"group_unsubscribe","asm_group_id":42}`)...)
	sum := flushAt(t, root, b, "p", day)
	if sum.Rows != 2 || sum.Duplicates != 1 {
		t.Fatalf("%d rows, %d duplicates; want the reordered copy dropped once and the later event kept", sum.Rows, sum.Duplicates)
	}
}

// TestRetryWindow: SendGrid retries for 24 h; the history remembers 72 h
// (--dedupe-window). A retry 71 h after the first copy was committed is
// dropped; one 73 h after is kept (README, "Exactly once").
func TestRetryWindow(t *testing.T) {
	ev := lines(`{"email":"r@x.com","timestamp":1767225600,"event":"delivered","sg_event_id":"RETRY-1"}`)
	for _, tc := range []struct {
		later time.Duration
		rows  int64
	}{{71 * time.Hour, 0}, {73 * time.Hour, 1}} {
		b := testbucket.Open(t, "mem")
		root := t.TempDir()
		post(t, root, ev...)
		flushAt(t, root, b, "p", day)
		post(t, root, ev...)
		if sum := flushAt(t, root, b, "p", day.Add(tc.later)); sum.Rows != tc.rows {
			t.Errorf("retry %v later: %d rows, want %d", tc.later, sum.Rows, tc.rows)
		}
	}
}

// TestHistoryPerDestination: the history describes what a destination
// holds. The spool's committed segments, flushed again into a new prefix,
// are all written there; into the old one, none is.
func TestHistoryPerDestination(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	input := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")[:500]
	fillSpool(t, root, input, 50, 64<<10)
	first := flushAt(t, root, b, "old", day)
	want := expect(t, input).rows
	if first.Rows != want {
		t.Fatalf("first flush %d rows, want %d", first.Rows, want)
	}
	// What a user tried: move done/ back and flush into a new bucket prefix.
	moveBack := func() {
		err := spool.Dir{Root: root}.WalkDone(func(p, rel string, _ os.DirEntry) error {
			return os.Rename(p, filepath.Join(root, rel))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	moveBack()
	if sum := flushAt(t, root, b, "new", day.Add(time.Hour)); sum.Rows != want || sum.Duplicates != first.Duplicates {
		t.Fatalf("into a new destination: %d rows, %d duplicates; want %d rows and only the input's own %d duplicates",
			sum.Rows, sum.Duplicates, want, first.Duplicates)
	}
	moveBack()
	if sum := flushAt(t, root, b, "old", day.Add(2*time.Hour)); sum.Rows != 0 {
		t.Fatalf("into the old destination again: %d rows, want none", sum.Rows)
	}
	if n := len(rowsOf(t, b, "new")); int64(n) != want {
		t.Fatalf("new destination holds %d rows, want %d", n, want)
	}
}

// TestUpgradeKeepsHistory: a spool whose history the previous release kept
// (state/dedupe/<plan>.run, one per spool), flushing into the bucket that
// release flushed into, still drops a retry of what it loaded.
func TestUpgradeKeepsHistory(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	old := lines(`{"email":"o@x.com","timestamp":1767225600,"event":"open","sg_event_id":"OLD-1"}`,
		`{"email":"o@x.com","timestamp":1767225601,"event":"unsubscribe"}`)
	post(t, root, old...)
	flushAt(t, root, b, "p", day)
	// Turn what this release wrote into what the previous one would have:
	// its history and no destination id.
	state := filepath.Join(root, spool.StateDir, "dedupe")
	dests, _ := filepath.Glob(filepath.Join(state, "*"))
	for _, d := range dests {
		os.RemoveAll(d)
	}
	keys := []dedupe.Key{dedupe.LegacyKey(old[0], []byte("OLD-1")), dedupe.LegacyKey(old[1], nil)}
	if bytes.Compare(keys[0][:], keys[1][:]) > 0 {
		keys[0], keys[1] = keys[1], keys[0]
	}
	run := []byte("SGDEDUP1")
	run = binary.LittleEndian.AppendUint64(run, 2)
	run = append(append(run, keys[0][:]...), keys[1][:]...)
	if err := os.WriteFile(filepath.Join(state, "0000000000000001.run"), run, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	os.Chtimes(filepath.Join(state, "0000000000000001.run"), now, now)
	if err := os.Remove(filepath.Join(b.Dir, "p", "_sgload", "destination.json")); err != nil {
		t.Fatal(err)
	}

	post(t, root, old...) // SendGrid retries both
	sum := flushAt(t, root, b, "p", now.Add(time.Hour))
	if sum.Rows != 0 || sum.Duplicates != 2 {
		t.Fatalf("after the upgrade: %d rows, %d duplicates; want both retries dropped", sum.Rows, sum.Duplicates)
	}
	// Another bucket never held them: the old history is not its.
	other := testbucket.Open(t, "file")
	post(t, root, old...)
	if sum := flushAt(t, root, other, "p", now.Add(2*time.Hour)); sum.Rows != 2 {
		t.Fatalf("another destination: %d rows, want 2", sum.Rows)
	}
}

package rewrite

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// The person to forget: the sample's most frequent recipient.
const victim = "ivan.nina4667@example-corp6.com"

// grepTree lists the files under root holding the address in any case.
func grepTree(t *testing.T, root, addr string) []string {
	t.Helper()
	var hits []string
	needle := []byte(strings.ToLower(addr))
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(bytes.ToLower(b), needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestForget erases a person from a spool (committed segments, segments
// waiting for flush, a sync snapshot, quarantine) and from a bucket (files
// live and files a compaction replaced), then looks for any byte of the
// address under both: none may remain; everyone else's data stays; a
// follower's cursor still works; an event for the address that arrives
// afterwards is kept.
func TestForget(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	d := spool.Dir{Root: root}
	sample := spooltest.Lines(t, "../testdata/events/sample-2000.ndjson")
	extra := [][]byte{
		// The address elsewhere in the row: a custom arg, upper case, a URL,
		// and behind a JSON escape.
		[]byte(`{"email":"someone@else.com","timestamp":1767225600,"event":"click","sg_event_id":"X1","ref":"IVAN.NINA4667@EXAMPLE-CORP6.COM"}`),
		[]byte(`{"email":"other@else.com","timestamp":1767225601,"event":"click","sg_event_id":"X2","url":"https://x.example/?u=ivan.nina4667@example-corp6.com"}`),
		[]byte(`{"email":"ivan.nina4667\u0040example-corp6.com","timestamp":1767225602,"event":"open","sg_event_id":"X3"}`),
	}
	fill := func(events [][]byte) {
		spooltest.Fill(t, root, events, spooltest.Options{Node: "n1", PerPost: 20, SegmentBytes: 32 << 10})
	}
	fill(append(append([][]byte{}, sample[:1200]...), extra...))
	flush := func() {
		t.Helper()
		if _, err := loader.Flush(context.Background(), loader.Options{Spool: d, Bucket: b.Bucket, Prefix: prefix, MaxPlanBytes: 64 << 10}); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	// A compaction whose grace has not passed: its inputs are replaced but
	// still there, and hold the address too.
	if _, err := Compact(context.Background(), opts(b, time.Now())); err != nil {
		t.Fatal(err)
	}
	fill(sample[1200:1600]) // waiting for flush
	// A contact synced from the API.
	w, err := spool.NewSnapshotWriter(d, "mc_contacts", "n1", time.Now().UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
	page := `[{"id":"c1","email":"ivan.nina4667@example-corp6.com","first_name":"Ivan"},{"id":"c2","email":"keep@me.com"}]`
	if err := w.Write(time.Now().UnixMicro(), time.Now(), map[string]string{spool.HeaderCollection: "mc_contacts"}, []byte(page), 2); err != nil {
		t.Fatal(err)
	}
	done := `[{"collection":"mc_contacts","sync_id":"s1","mode":"full","rows":2,"pages":1}]`
	if err := w.Write(time.Now().UnixMicro()+10, time.Now(), map[string]string{spool.HeaderSnapshot: "complete", spool.HeaderCollection: "mc_contacts", spool.HeaderSyncID: "s1"}, []byte(done), 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := spool.WriteQuarantine(d, "body", spool.Quarantined{Body: []byte(`not json ivan.nina4667@example-corp6.com`)}); err != nil {
		t.Fatal(err)
	}
	// A follower part of the way through.
	f, err := spool.OpenFollower(d, "forward")
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	for range 30 {
		rec, pos, err := f.Next()
		if err != nil {
			t.Fatal(err)
		}
		seen += rec.Events
		if err := f.Commit(pos); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	if len(grepTree(t, root, victim)) == 0 || len(grepTree(t, b.Dir, victim)) == 0 {
		t.Fatal("the address is not in the spool or the bucket to begin with")
	}
	m, err := NewMatcher([]string{victim})
	if err != nil {
		t.Fatal(err)
	}
	scrubbed, err := spool.Forget(root, m.Text)
	if err != nil {
		t.Fatal(err)
	}
	if scrubbed.Events == 0 || scrubbed.Objects != 1 || scrubbed.QuarantineFiles != 1 {
		t.Fatalf("spool: %+v", scrubbed)
	}
	audit := NewAudit([]string{victim}, time.Now(), "test")
	o := opts(b, time.Now())
	sum, err := Forget(context.Background(), o, m, audit)
	if err != nil {
		t.Fatal(err)
	}
	if sum.RowsRemoved == 0 || sum.FilesDeleted == 0 {
		t.Fatalf("bucket: %+v", sum)
	}
	flush() // what was waiting, scrubbed, and the snapshot
	if hits := grepTree(t, root, victim); len(hits) > 0 {
		t.Errorf("the address is still in the spool: %v", hits)
	}
	if hits := grepTree(t, b.Dir, victim); len(hits) > 0 {
		t.Errorf("the address is still in the bucket: %v", hits)
	}
	if bytes.Contains(audit.JSON(), []byte("ivan")) {
		t.Error("the audit record names the address")
	}
	// Everyone else is still there, exactly once.
	var rest [][]byte
	for _, e := range append(append([][]byte{}, sample[:1600]...), extra...) {
		if !m.Text(e) {
			rest = append(rest, e)
		}
	}
	got, _ := viewKeys(t, b)
	if want := oracle(t, rest); len(got) != len(want) {
		t.Errorf("the bucket shows %d events, want the %d of everyone else", len(got), len(want))
	}
	verifyClean(t, b)
	// The follower resumes where it was and never sees the address.
	f, err = spool.OpenFollower(d, "forward")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for {
		rec, _, err := f.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Text(rec.Body) {
			t.Fatalf("the follower read a record with the address: %.200s", rec.Body)
		}
		seen += rec.Events
	}
	// It had read the first 30 POSTs (600 events) before; after, every
	// event that followed them but the address's.
	want := 600
	for _, e := range append(append(append([][]byte{}, sample[600:1200]...), extra...), sample[1200:1600]...) {
		if !m.Text(e) {
			want++
		}
	}
	if seen != want {
		t.Errorf("the follower read %d events in all, want %d", seen, want)
	}
	// Forgetting is not a suppression list: a later event is kept.
	fill([][]byte{[]byte(`{"email":"ivan.nina4667@example-corp6.com","timestamp":1767400000,"event":"open","sg_event_id":"LATER"}`)})
	flush()
	if len(grepTree(t, b.Dir, victim)) == 0 {
		t.Error("an event that arrived after the erasure was not loaded")
	}
}

// TestForgetNeedsTheSpool: while serve holds the spool, forget refuses
// (exit 4 at the command line) and changes nothing.
func TestForgetNeedsTheSpool(t *testing.T) {
	root := t.TempDir()
	w, err := spool.OpenWriter(root, spool.Options{Node: "n1", MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m, _ := NewMatcher([]string{victim})
	if _, err := spool.Forget(root, m.Text); !errors.Is(err, spool.ErrBusy) {
		t.Fatalf("forget while serve runs: %v, want ErrBusy", err)
	}
}

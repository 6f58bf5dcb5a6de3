package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func openTest(t *testing.T, root string, o Options) *Writer {
	t.Helper()
	if o.Node == "" {
		o.Node = "t1"
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = -1
	}
	o.Registerer = prometheus.NewRegistry()
	s, err := OpenWriter(root, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func prep(t *testing.T, body string) *Prepared {
	t.Helper()
	p, err := Prepare(strings.Count(body, "{"), "none", nil, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll returns every record in the sealed segments of dir, in order.
func readAll(t *testing.T, dir string) []*Record {
	t.Helper()
	segs, err := ListSegments(dir, SealedSuffix)
	if err != nil {
		t.Fatal(err)
	}
	var out []*Record
	for _, sg := range segs {
		r, err := OpenReader(sg.Path)
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", sg.Name(), err)
			}
			out = append(out, rec)
		}
		r.Close()
	}
	return out
}

func TestAppendIsDurableAndOrdered(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root, Options{})
	ctx := context.Background()
	var last int64
	for i := range 5 {
		ack, err := s.Append(ctx, prep(t, fmt.Sprintf(`[{"i":%d},{"j":%d}]`, i, i)))
		if err != nil {
			t.Fatal(err)
		}
		if ack.FirstSeq <= last {
			t.Fatalf("sequence %d not above %d", ack.FirstSeq, last)
		}
		last = ack.FirstSeq + 1 // two events each
		if !strings.HasSuffix(ack.Segment, OpenSuffix) {
			t.Fatalf("ack names segment %q", ack.Segment)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, filepath.Join(root, EventsDir))
	if len(recs) != 5 {
		t.Fatalf("read %d records, want 5", len(recs))
	}
	for i, r := range recs {
		if want := fmt.Sprintf(`[{"i":%d},{"j":%d}]`, i, i); string(r.Body) != want {
			t.Errorf("record %d body %q, want %q", i, r.Body, want)
		}
		if i > 0 && r.Sequence <= recs[i-1].LastSequence() {
			t.Errorf("record %d sequence %d overlaps previous", i, r.Sequence)
		}
	}
	if opens, _ := ListSegments(filepath.Join(root, EventsDir), OpenSuffix); len(opens) != 0 {
		t.Errorf("Close left %d open segments", len(opens))
	}
}

func TestGroupCommitSharesOneFsync(t *testing.T) {
	hold := make(chan struct{})
	var once sync.Once
	first := make(chan struct{})
	var syncs int
	var mu sync.Mutex
	s := openTest(t, t.TempDir(), Options{beforeSync: func() {
		mu.Lock()
		syncs++
		mu.Unlock()
		once.Do(func() { close(first); <-hold })
	}})
	ctx := context.Background()
	// The first append holds the writer inside its commit...
	go s.Append(ctx, prep(t, `[{"first":1}]`))
	<-first
	// ...while 20 more queue up; they must all share the next commit.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Append(ctx, prep(t, fmt.Sprintf(`[{"n":%d}]`, i)))
			errs <- err
		}()
	}
	// Wait until all 20 are blocked handing their request to the writer.
	time.Sleep(200 * time.Millisecond)
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if syncs != 2 {
		t.Fatalf("21 appends took %d group commits, want 2 (the held one, then all 20 together)", syncs)
	}
}

func TestSegmentsRollOnSizeAndAge(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		root := t.TempDir()
		s := openTest(t, root, Options{SegmentBytes: 300})
		for i := range 6 {
			if _, err := s.Append(context.Background(), prep(t, fmt.Sprintf(`[{"payload":"%0200d"}]`, i))); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		segs, _ := ListSegments(filepath.Join(root, EventsDir), SealedSuffix)
		if len(segs) != 6 {
			t.Fatalf("%d sealed segments, want 6 (one per record over 300 bytes)", len(segs))
		}
	})
	t.Run("age", func(t *testing.T) {
		root := t.TempDir()
		s := openTest(t, root, Options{SegmentAge: 100 * time.Millisecond})
		if _, err := s.Append(context.Background(), prep(t, `[{"a":1}]`)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			segs, _ := ListSegments(filepath.Join(root, EventsDir), SealedSuffix)
			if len(segs) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("segment not sealed by age")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestRecoverTornOpenSegment(t *testing.T) {
	root := t.TempDir()
	l, err := Create(root)
	if err != nil {
		t.Fatal(err)
	}
	good1, _ := EncodeRecord(&Record{Sequence: 100, Events: 1, ReceivedAt: time.Unix(1, 0), Node: "t1", Body: []byte(`[{"a":1}]`)})
	good2, _ := EncodeRecord(&Record{Sequence: 200, Events: 3, ReceivedAt: time.Unix(1, 0), Node: "t1", Body: []byte(`[{},{},{}]`)})
	torn := good2[:len(good2)/2]
	p := filepath.Join(l.Events(), SegmentName("t1", 100, OpenSuffix))
	os.WriteFile(p, append(append(append([]byte{}, good1...), good2...), torn...), 0o644)
	// An open segment holding only a torn write is removed.
	empty := filepath.Join(l.Events(), SegmentName("t1", 300, OpenSuffix))
	os.WriteFile(empty, torn, 0o644)

	s := openTest(t, root, Options{Now: func() time.Time { return time.UnixMicro(50) }})
	recs := readAll(t, l.Events())
	if len(recs) != 2 || recs[1].Sequence != 200 {
		t.Fatalf("recovered %d records, want the 2 intact ones", len(recs))
	}
	if _, err := os.Stat(empty); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("torn-only segment still there: %v", err)
	}
	q, _ := os.ReadDir(l.Quarantine())
	if len(q) != 2 {
		t.Errorf("quarantine holds %d files, want the 2 torn tails", len(q))
	}
	// The clock says 50µs, but sequences continue above the recovered ones.
	ack, err := s.Append(context.Background(), prep(t, `[{"b":1}]`))
	if err != nil {
		t.Fatal(err)
	}
	if ack.FirstSeq <= 202 {
		t.Fatalf("new sequence %d does not continue after recovered 202", ack.FirstSeq)
	}
}

func TestSequenceSurvivesRestartWithClockBehind(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root, Options{Now: func() time.Time { return time.UnixMicro(1_000_000) }})
	ack1, err := s.Append(context.Background(), prep(t, `[{},{}]`))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openTest(t, root, Options{Now: func() time.Time { return time.UnixMicro(10) }})
	ack2, err := s2.Append(context.Background(), prep(t, `[{}]`))
	if err != nil {
		t.Fatal(err)
	}
	if ack2.FirstSeq != ack1.FirstSeq+2 {
		t.Fatalf("after restart with clock behind: seq %d, want %d", ack2.FirstSeq, ack1.FirstSeq+2)
	}
}

func TestOneWriterPerSpool(t *testing.T) {
	root := t.TempDir()
	openTest(t, root, Options{})
	_, err := OpenWriter(root, Options{Node: "t1", MinFreeBytes: -1})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second Open: %v, want ErrBusy", err)
	}
}

func TestRefusesWhenDiskBelowFloor(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{MinFreeBytes: 1 << 62})
	_, err := s.Append(context.Background(), prep(t, `[{}]`))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Append: %v, want ErrDiskFull", err)
	}
	if s.Ready() == nil {
		t.Fatal("Ready() = nil below the floor")
	}
}

func TestWriteFailureIsReportedAndRecovers(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root, Options{})
	// Take the folder away: the next segment cannot be created.
	if err := os.RemoveAll(filepath.Join(root, EventsDir)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), prep(t, `[{}]`)); err == nil {
		t.Fatal("Append succeeded with the events folder gone")
	}
	if s.Ready() == nil {
		t.Fatal("Ready() = nil after a failed write")
	}
	os.Mkdir(filepath.Join(root, EventsDir), 0o755)
	if _, err := s.Append(context.Background(), prep(t, `[{}]`)); err != nil {
		t.Fatalf("Append after the folder is back: %v", err)
	}
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready after a successful write: %v", err)
	}
}

func TestAppendAfterClose(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	s.Close()
	if _, err := s.Append(context.Background(), prep(t, `[{}]`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
}

func TestSegmentNames(t *testing.T) {
	name := SegmentName("node-a", 0x1234, SealedSuffix)
	if name != "node-a-0000000000001234.ndjson" {
		t.Fatalf("SegmentName = %q", name)
	}
	node, seq, ok := ParseSegmentName(name)
	if !ok || node != "node-a" || seq != 0x1234 {
		t.Fatalf("ParseSegmentName = %q, %d, %v", node, seq, ok)
	}
	for _, bad := range []string{"x.ndjson", "node-zzzzzzzzzzzzzzzz.ndjson", "Node-0000000000001234.ndjson", "node-0000000000001234.txt"} {
		if _, _, ok := ParseSegmentName(bad); ok {
			t.Errorf("ParseSegmentName(%q) accepted", bad)
		}
	}
}

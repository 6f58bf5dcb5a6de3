package parquetfile

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/sgload/sgload/schema"
)

// loadBatches maps the events of path into batches of up to rows rows per
// table, the way flush does.
func loadBatches(tb testing.TB, path string, rows int) []*schema.Batch {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	m := schema.NewEventMapper()
	cur := map[string]*schema.Batch{}
	var out []*schema.Batch
	seq := int64(1)
	for sc.Scan() {
		e, err := m.Parse(append([]byte(nil), sc.Bytes()...))
		if err != nil {
			tb.Fatal(err)
		}
		b := cur[e.Table]
		if b == nil {
			b = schema.NewBatch(schema.EventTable(e.Table))
			cur[e.Table] = b
		}
		m.Append(b, e, schema.Meta{Sequence: seq, ReceivedAt: 1767225600_000000, Node: "bench"})
		seq++
		if b.Len() >= rows {
			out = append(out, b)
			delete(cur, e.Table)
		}
	}
	names := make([]string, 0, len(cur))
	for n := range cur {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, cur[n])
	}
	return out
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// testWriter is one of the writers the tests and the benchmark compare.
type testWriter struct {
	name string
	open func(io.Writer, *schema.Table) RowGroupWriter
}

// testWriters are sgload's writer, first, and the Arrow ones it is
// compared with.
func testWriters(tb testing.TB) []testWriter {
	arrowWriter := func(aw RowGroupWriter, err error) RowGroupWriter {
		if err != nil {
			tb.Fatal(err)
		}
		return aw
	}
	return []testWriter{
		{"parquet-go", func(w io.Writer, t *schema.Table) RowGroupWriter { return NewWriter(w, t, Options{}) }},
		{"arrow", func(w io.Writer, t *schema.Table) RowGroupWriter { return arrowWriter(NewArrowWriter(w, t, Options{})) }},
		{"arrowcols", func(w io.Writer, t *schema.Table) RowGroupWriter { return arrowWriter(NewArrowColumnWriter(w, t)) }},
	}
}

// BenchmarkWriters compares the Parquet implementations on the same
// batches: SGLOAD_BENCH_EVENTS names an NDJSON file (make bench-flush uses
// 2M events); the default is the 2,000-event sample.
func BenchmarkWriters(b *testing.B) {
	path := os.Getenv("SGLOAD_BENCH_EVENTS")
	if path == "" {
		path = "../testdata/events/sample-2000.ndjson"
	}
	batches := loadBatches(b, path, 65536)
	var rows int
	for _, bt := range batches {
		rows += bt.Len()
	}
	for _, tw := range testWriters(b) {
		b.Run(tw.name, func(b *testing.B) {
			var out countingWriter
			var peak uint64
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				out.n = 0
				runtime.GC()
				for _, bt := range batches {
					w := tw.open(&out, bt.Table)
					if err := w.WriteRowGroup(bt); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}
			}
			el := time.Since(start).Seconds() / float64(b.N)
			b.ReportMetric(float64(rows)/el, "rows/s")
			b.ReportMetric(float64(out.n)/1e6, "MB-out")
			b.ReportMetric(float64(peak)/1e6, "MB-peak-heap")
		})
	}
}

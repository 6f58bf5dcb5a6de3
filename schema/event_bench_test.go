package schema

import (
	"testing"

	"github.com/sgload/sgload/spool/spooltest"
)

func sampleEvents(tb testing.TB) [][]byte {
	return spooltest.Lines(tb, "../testdata/events/sample-2000.ndjson")
}

// BenchmarkEventMapper is the per-event cost of flush's mapping step:
// parse, coerce every field, append the row.
func BenchmarkEventMapper(b *testing.B) {
	events := sampleEvents(b)
	m := NewEventMapper()
	batches := map[string]*Batch{}
	var size int
	for _, e := range events {
		size += len(e)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for _, bt := range batches {
			bt.Reset()
		}
		for _, raw := range events {
			e, err := m.Parse(raw)
			if err != nil {
				b.Fatal(err)
			}
			bt := batches[e.Table]
			if bt == nil {
				bt = NewBatch(EventTable(e.Table))
				batches[e.Table] = bt
			}
			m.Append(bt, e, Meta{Sequence: 1, ReceivedAt: 1, Node: "n"})
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

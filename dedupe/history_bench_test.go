package dedupe

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkHistoryGrowth feeds plans of 450,000 distinct keys (a 256 MiB
// plan of SendGrid events) through the history, as one flush over a large
// backlog does, and reports the time per key of the first and last tenth:
// flat means the history's length does not slow lookups.
func BenchmarkHistoryGrowth(b *testing.B) {
	plans := 45
	if s := os.Getenv("SGLOAD_BENCH_PLANS"); s != "" {
		fmt.Sscan(s, &plans)
	}
	const perPlan = 450_000
	for range b.N {
		ix, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		var times []time.Duration
		n := 0
		for p := range plans {
			start := time.Now()
			s := &Set{}
			for i := range perPlan {
				s.Add(i, numKey(n))
				n++
			}
			res, err := ix.Resolve(s, t0.Add(-window))
			if err != nil {
				b.Fatal(err)
			}
			id := fmt.Sprintf("%016x", p)
			if err := ix.WritePending(id, s, res, t0); err != nil {
				b.Fatal(err)
			}
			if err := ix.Commit(id); err != nil {
				b.Fatal(err)
			}
			if _, err := ix.Maintain(t0.Add(-window)); err != nil {
				b.Fatal(err)
			}
			times = append(times, time.Since(start))
		}
		if os.Getenv("SGLOAD_BENCH_VERBOSE") != "" {
			for i, d := range times {
				b.Logf("plan %d: %v", i, d.Round(time.Millisecond))
			}
		}
		tenth := max(plans/10, 1)
		var first, last time.Duration
		for i := range tenth {
			first += times[i]
			last += times[len(times)-1-i]
		}
		b.ReportMetric(float64(first.Nanoseconds())/float64(tenth*perPlan), "ns/key-first")
		b.ReportMetric(float64(last.Nanoseconds())/float64(tenth*perPlan), "ns/key-last")
	}
}

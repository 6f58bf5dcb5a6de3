package status

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sgload/sgload/spool"
)

// Point is one sample of the page's charts.
type Point struct {
	At              time.Time `json:"at"`
	EventsPerSecond float64   `json:"events_per_second"`
	BacklogBytes    int64     `json:"backlog_bytes"`
}

// History keeps the last samples, oldest first, in memory: a restarted
// serve starts a new chart.
type History struct {
	mu     sync.Mutex
	points []Point
	max    int
}

// NewHistory keeps up to max points (360 at one a minute is six hours).
func NewHistory(max int) *History { return &History{max: max} }

// Add appends p, dropping the oldest point past the limit.
func (h *History) Add(p Point) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.points = append(h.points, p)
	if over := len(h.points) - h.max; over > 0 {
		h.points = append(h.points[:0], h.points[over:]...)
	}
}

// Points is a copy of the samples, oldest first.
func (h *History) Points() []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Point(nil), h.points...)
}

// Recorder samples serve's event counter and the spool's backlog into a
// History every Interval; its Rate is the page's events/s.
type Recorder struct {
	History  *History
	Spool    spool.Dir
	Interval time.Duration // one minute
	// Events is the total of events accepted so far (serve's counter).
	Events func() float64
	Now    func() time.Time

	mu       sync.Mutex
	rate     float64
	lastAt   time.Time
	lastSeen float64
}

// Run samples until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	if r.Interval <= 0 {
		r.Interval = time.Minute
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	r.mu.Lock()
	r.lastAt, r.lastSeen = r.Now(), r.Events()
	r.mu.Unlock()
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sample()
		}
	}
}

// Sample takes one point now.
func (r *Recorder) Sample() {
	now, seen := r.Now(), r.Events()
	_, backlog, _ := r.Spool.Backlog()
	r.mu.Lock()
	if dt := now.Sub(r.lastAt).Seconds(); dt > 0 && !r.lastAt.IsZero() {
		r.rate = max(0, seen-r.lastSeen) / dt
	}
	r.lastAt, r.lastSeen = now, seen
	rate := r.rate
	r.mu.Unlock()
	r.History.Add(Point{At: now.UTC(), EventsPerSecond: rate, BacklogBytes: backlog})
}

// Rate is events/s over the last interval.
func (r *Recorder) Rate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rate
}

// CounterTotal reads the sum of a counter family from g (every label
// combination), for Recorder.Events; 0 when it is missing.
func CounterTotal(g prometheus.Gatherer, name string) func() float64 {
	return func() float64 {
		mfs, err := g.Gather()
		if err != nil {
			return 0
		}
		var total float64
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
		return total
	}
}

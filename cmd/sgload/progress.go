package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sgload/sgload/loader"
)

// progressLine redraws one status line on a terminal, at most 4 times a second.
type progressLine struct {
	w    io.Writer
	mu   sync.Mutex
	last time.Time
	wide int
}

func (p *progressLine) update(pr loader.Progress) {
	pct := 0.0
	if pr.BytesTotal > 0 {
		pct = 100 * float64(pr.BytesDone) / float64(pr.BytesTotal)
	}
	rate := float64(pr.Events) / max(pr.Elapsed.Seconds(), 0.001)
	eta := "?"
	if pr.BytesDone > 0 && pr.BytesTotal > pr.BytesDone {
		left := time.Duration(float64(pr.Elapsed) * float64(pr.BytesTotal-pr.BytesDone) / float64(pr.BytesDone))
		eta = left.Round(time.Second).String()
	}
	p.show(fmt.Sprintf("plan %d/%d %-7s %5.1f%%  %s / %s  %s events/s  ETA %s",
		pr.Plan, pr.Plans, pr.Phase, pct, mb(pr.BytesDone/2), mb(pr.BytesTotal/2), count(int64(rate)), eta))
}

// show redraws the line, at most 4 times a second.
func (p *progressLine) show(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 250*time.Millisecond {
		return
	}
	p.last = time.Now()
	pad := max(0, p.wide-len(line))
	p.wide = len(line)
	fmt.Fprintf(p.w, "\r%s%*s", line, pad, "")
}

func (p *progressLine) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wide > 0 {
		fmt.Fprintf(p.w, "\r%*s\r", p.wide, "")
	}
}

package status

import (
	"fmt"
	"time"

	"github.com/dustin/go-humanize"
)

// Thresholds turn a Report into problems, for monitoring checks (sgload
// status exits non-zero when there is one) and the page's headline. A zero
// value turns its check off, except where noted.
type Thresholds struct {
	// ExpectServe: serve must hold the spool's lock.
	ExpectServe bool
	// MaxBacklogAge: the oldest event not yet flushed is older (flush is not
	// running, or failing).
	MaxBacklogAge time.Duration
	// MaxBacklogBytes: sealed segments waiting for flush.
	MaxBacklogBytes int64
	// MaxOpenAge: the open segment is older (serve is not sealing).
	MaxOpenAge time.Duration
	// MaxFlushAge: the last flush commit is older (needs a bucket).
	MaxFlushAge time.Duration
	// MaxLagBytes: a follower (forward, tee) is further behind.
	MaxLagBytes int64
	// MaxQuarantineFiles: more files in quarantine; negative turns it off, so
	// the default 0 reports any quarantined body (a human should look).
	MaxQuarantineFiles int
	// MinFreeBytes: less free space on the spool's disk.
	MinFreeBytes int64
}

// DefaultThresholds suit a serve with a flush every few minutes.
var DefaultThresholds = Thresholds{
	ExpectServe:   true,
	MaxBacklogAge: 30 * time.Minute,
	MaxOpenAge:    10 * time.Minute,
	MaxLagBytes:   1 << 30,
	MinFreeBytes:  1 << 30,
}

// Check applies t to r: r.Problems lists each threshold crossed (sorted
// as checked), and r.Thresholds records the ones in force.
func (r *Report) Check(t Thresholds) {
	r.Problems = []string{}
	add := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	r.Thresholds = map[string]any{"expect_serve": t.ExpectServe}
	if t.ExpectServe {
		switch {
		case !r.Serve.Up:
			add("serve is not running on this spool (no process holds its serve lock)")
		case r.Serve.Health != "" && r.Serve.Health != "ok":
			add("serve's /healthz: %s", r.Serve.Health)
		}
	}
	if t.MaxBacklogAge > 0 {
		r.Thresholds["max_backlog_age_seconds"] = t.MaxBacklogAge.Seconds()
		if age := seconds(r.Backlog.OldestAgeSeconds); age > t.MaxBacklogAge {
			add("the oldest unflushed event is %s old (over %s): is flush running?", round(age), t.MaxBacklogAge)
		}
	}
	if t.MaxBacklogBytes > 0 {
		r.Thresholds["max_backlog_bytes"] = t.MaxBacklogBytes
		if r.Backlog.Bytes > t.MaxBacklogBytes {
			add("%s of sealed segments wait for flush (over %s)", Size(r.Backlog.Bytes), Size(t.MaxBacklogBytes))
		}
	}
	if t.MaxOpenAge > 0 {
		r.Thresholds["max_open_segment_age_seconds"] = t.MaxOpenAge.Seconds()
		if age := seconds(r.Open.AgeSeconds); age > t.MaxOpenAge {
			add("the open segment is %s old (over %s): serve is not sealing it", round(age), t.MaxOpenAge)
		}
	}
	if t.MaxFlushAge > 0 {
		r.Thresholds["max_flush_age_seconds"] = t.MaxFlushAge.Seconds()
		switch {
		case r.LastFlush == nil:
			add("no flush commit found in the bucket for node %q", r.Node)
		case seconds(r.LastFlush.AgeSeconds) > t.MaxFlushAge:
			add("the last flush commit is %s old (over %s)", round(seconds(r.LastFlush.AgeSeconds)), t.MaxFlushAge)
		}
	}
	if t.MaxLagBytes > 0 {
		r.Thresholds["max_lag_bytes"] = t.MaxLagBytes
		for _, f := range r.Followers {
			if f.Bytes > t.MaxLagBytes {
				add("follower %s is %s behind (over %s)", f.Name, Size(f.Bytes), Size(t.MaxLagBytes))
			}
		}
	}
	if t.MaxQuarantineFiles >= 0 {
		r.Thresholds["max_quarantine_files"] = t.MaxQuarantineFiles
		if r.Quarantine.Files > t.MaxQuarantineFiles {
			add("%s (%s) in quarantine: bodies sgload could not read, kept for a look", plural(r.Quarantine.Files, "file"), Size(r.Quarantine.Bytes))
		}
	}
	if t.MinFreeBytes > 0 {
		r.Thresholds["min_free_bytes"] = t.MinFreeBytes
		if r.Disk.FreeBytes < uint64(t.MinFreeBytes) {
			add("only %s free on the spool's disk (under %s)", Size(int64(r.Disk.FreeBytes)), Size(t.MinFreeBytes))
		}
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func round(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// Size is n bytes in SI units with three digits: 891 MB, 12.3 kB.
func Size(n int64) string { return humanize.BytesN(uint64(max(n, 0)), 3) }

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

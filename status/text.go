package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
)

// Lines are the report as label/value pairs, in the order a person reads
// them: the text output and the page both show these.
func (r *Report) Lines() [][2]string {
	serve := "down (no process holds the serve lock)"
	if r.Serve.Up {
		serve = "up"
		if r.Serve.PID > 0 {
			serve += fmt.Sprintf(" (pid %d)", r.Serve.PID)
		}
	}
	if r.Serve.Health != "" {
		serve += ", /healthz " + r.Serve.Health
	}
	open := "none"
	if r.Open.Segments > 0 {
		open = fmt.Sprintf("%s, %s old", Size(r.Open.Bytes), Age(r.Open.AgeSeconds))
	}
	backlog := "empty"
	if r.Backlog.Segments > 0 {
		backlog = fmt.Sprintf("%s events in %d segments (%s)", humanize.Comma(r.Backlog.Events), r.Backlog.Segments, Size(r.Backlog.Bytes))
	}
	oldest := "none"
	if !r.Backlog.Oldest.IsZero() {
		oldest = fmt.Sprintf("%s old (%s)", Age(r.Backlog.OldestAgeSeconds), r.Backlog.Oldest.Format(time.RFC3339))
	}
	followers := "none"
	if len(r.Followers) > 0 {
		var parts []string
		for _, f := range r.Followers {
			parts = append(parts, fmt.Sprintf("%s %s behind", f.Name, Size(f.Bytes)))
		}
		followers = strings.Join(parts, "; ")
	}
	return [][2]string{
		{"serve", serve},
		{"events/s", fmt.Sprintf("%.1f (last %s)", r.EventsPerSecond, time.Duration(r.RateWindow*float64(time.Second)))},
		{"open segment", open},
		{"backlog", backlog},
		{"oldest unflushed", oldest},
		{"last flush", commitText(r.LastFlush, "unknown (give --bucket)")},
		{"last compaction", commitText(r.LastCompaction, "unknown")},
		{"followers", followers},
		{"quarantine", fmt.Sprintf("%s (%s)", plural(r.Quarantine.Files, "file"), Size(r.Quarantine.Bytes))},
		{"dedupe history", fmt.Sprintf("%s keys in %d runs (%s)", humanize.Comma(r.Dedupe.Keys), r.Dedupe.Runs, Size(r.Dedupe.Bytes))},
		{"disk free", Size(int64(r.Disk.FreeBytes))},
	}
}

func commitText(c *Commit, none string) string {
	if c == nil {
		return none
	}
	return fmt.Sprintf("%s ago, %s rows (%s)", Age(c.AgeSeconds), humanize.Comma(c.Rows), c.Key)
}

// Age is a duration in seconds the way a person reads it: 42s, 7m12s, 3h4m.
func Age(s float64) string {
	d := seconds(s)
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// WriteText prints the report for a person: one line per item, then OK or
// the problems.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "spool\t%s (node %s)\n", r.Spool, r.Node)
	for _, l := range r.Lines() {
		fmt.Fprintf(tw, "%s\t%s\n", l[0], l[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Problems) == 0 {
		_, err := fmt.Fprintln(w, "OK")
		return err
	}
	for _, p := range r.Problems {
		if _, err := fmt.Fprintln(w, "PROBLEM:", p); err != nil {
			return err
		}
	}
	return nil
}

package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/status"
)

// exitProblems: sgload status found a threshold crossed.
const exitProblems = 6

func statusCommand() *cli.Command {
	d := status.DefaultThresholds
	return &cli.Command{
		Name:  "status",
		Usage: "show at a glance whether data flows: serve, events/s, backlog, last flush, lags, disk",
		Description: "Reads the spool (and the bucket's manifests with --bucket, and serve's /healthz with\n" +
			"--addr) without locking or changing anything. Prints one line per item, or one JSON line\n" +
			"with --json. For monitoring checks (Nagios, cron, Kubernetes probes), it exits 6 when a\n" +
			"threshold below is crossed, naming each; 0 turns a threshold off.\n" +
			"Exit codes: 0 OK, 6 problems found (listed), 1 status itself failed, 2 bad flags.",
		Flags: append(append([]cli.Flag{spoolFlag()}, bucketFlags()...),
			nodeFlag("node whose flush commits count (default: the spool's)"),
			&cli.StringFlag{Name: "addr", EnvVars: []string{"SGLOAD_STATUS_ADDR"},
				Usage: "serve's address (host:port or URL): GET /healthz must answer 200"},
			jsonFlag("report"),
			&cli.BoolFlag{Name: "expect-serve", Value: d.ExpectServe, EnvVars: []string{"SGLOAD_EXPECT_SERVE"}, Category: "Thresholds:",
				Usage: "a problem when serve does not hold the spool (--expect-serve=false on flush-only hosts)"},
			&cli.DurationFlag{Name: "max-backlog-age", Value: d.MaxBacklogAge, EnvVars: []string{"SGLOAD_MAX_BACKLOG_AGE"}, Category: "Thresholds:",
				Usage: "a problem when the oldest unflushed event is older"},
			&cli.GenericFlag{Name: "max-backlog-bytes", Value: sizeFlag(d.MaxBacklogBytes), EnvVars: []string{"SGLOAD_MAX_BACKLOG_BYTES"}, Category: "Thresholds:",
				Usage: "a problem when more sealed segments wait for flush"},
			&cli.DurationFlag{Name: "max-open-age", Value: d.MaxOpenAge, EnvVars: []string{"SGLOAD_MAX_OPEN_AGE"}, Category: "Thresholds:",
				Usage: "a problem when the open segment is older (serve is not sealing)"},
			&cli.DurationFlag{Name: "max-flush-age", Value: d.MaxFlushAge, EnvVars: []string{"SGLOAD_MAX_FLUSH_AGE"}, Category: "Thresholds:",
				Usage: "with --bucket: a problem when the last flush commit is older"},
			&cli.GenericFlag{Name: "max-lag-bytes", Value: sizeFlag(d.MaxLagBytes), EnvVars: []string{"SGLOAD_MAX_LAG_BYTES"}, Category: "Thresholds:",
				Usage: "a problem when a follower (forward, tee) is further behind"},
			&cli.IntFlag{Name: "max-quarantine-files", Value: d.MaxQuarantineFiles, EnvVars: []string{"SGLOAD_MAX_QUARANTINE_FILES"}, Category: "Thresholds:",
				Usage: "a problem when quarantine holds more files; -1 turns it off"},
			&cli.GenericFlag{Name: "min-free-bytes", Value: sizeFlag(d.MinFreeBytes), EnvVars: []string{"SGLOAD_MIN_FREE_BYTES"}, Category: "Thresholds:",
				Usage: "a problem when the spool's disk has less free"},
		),
		Action: runStatus,
	}
}

func statusThresholds(c *cli.Context) status.Thresholds {
	return status.Thresholds{
		ExpectServe:        c.Bool("expect-serve"),
		MaxBacklogAge:      c.Duration("max-backlog-age"),
		MaxBacklogBytes:    sizeValue(c, "max-backlog-bytes"),
		MaxOpenAge:         c.Duration("max-open-age"),
		MaxFlushAge:        c.Duration("max-flush-age"),
		MaxLagBytes:        sizeValue(c, "max-lag-bytes"),
		MaxQuarantineFiles: c.Int("max-quarantine-files"),
		MinFreeBytes:       sizeValue(c, "min-free-bytes"),
	}
}

func runStatus(c *cli.Context) error {
	d, err := openSpool(c)
	if err != nil {
		return err
	}
	o := status.Options{Spool: d, Prefix: prefix(c), Node: c.String("node"), Addr: c.String("addr")}
	if c.String("bucket") != "" {
		b, err := openExistingBucket(c.Context, c)
		if err != nil {
			return err
		}
		defer b.Close()
		o.Bucket = b
	}
	rep, err := status.Collect(c.Context, o)
	if err != nil {
		return failure(fmt.Errorf("status: %w", err), "")
	}
	rep.Check(statusThresholds(c))
	if c.Bool("json") {
		err = printJSON(c.App.Writer, rep)
	} else {
		err = rep.WriteText(c.App.Writer)
	}
	if err != nil {
		return err
	}
	if len(rep.Problems) > 0 {
		return &cliError{err: errors.New(plural(len(rep.Problems), "problem") + " found"), code: exitProblems,
			hint: "each is listed on stdout; thresholds are flags (sgload status --help)"}
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// statusPage is the page serve and run mount at /status, with the
// recorder that samples its charts.
func statusPage(o status.Options, events func() float64) (*status.Page, *status.Recorder) {
	rec := &status.Recorder{History: status.NewHistory(360), Spool: o.Spool, Interval: time.Minute, Events: events}
	o.EventRate = rec.Rate
	t := status.DefaultThresholds
	if o.Bucket != nil {
		t.MaxFlushAge = 0 // a quiet hour commits nothing; the backlog age tells a stuck flush
	}
	return &status.Page{Options: o, Thresholds: t, History: rec.History}, rec
}

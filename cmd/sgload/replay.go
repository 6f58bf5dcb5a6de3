package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/loader"
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "flush the committed segments the spool still keeps (done/) again, into any destination",
		Description: "Loads the segments kept in SPOOL/done (for --retain on flush) into --bucket/--prefix, with\n" +
			"that destination's own dedupe history: into a new prefix (a new bucket, a rebuilt schema) it\n" +
			"writes every event; into one that holds them, none. Crash-safe like flush (same journal and\n" +
			"manifests); a rerun goes on where a killed replay stopped. --since/--until (the events' own\n" +
			"time) and --event-type load part of it. Exit codes: 0 done, 1 failed (rerun), 2 bad flags,\n" +
			"4 a flush or replay holds the spool's lock.",
		OnUsageError: onUsageError,
		Flags: append(append(append([]cli.Flag{spoolFlag()}, bucketFlags()...),
			nodeFlag("node id in object names (default: the spool's)"),
			&cli.TimestampFlag{Name: "since", Layout: time.RFC3339, EnvVars: []string{"SGLOAD_REPLAY_SINCE"},
				Usage: "load events from this time on (RFC 3339, e.g. 2026-11-30T00:00:00Z)"},
			&cli.TimestampFlag{Name: "until", Layout: time.RFC3339, EnvVars: []string{"SGLOAD_REPLAY_UNTIL"},
				Usage: "load events before this time"},
			&cli.StringSliceFlag{Name: "event-type", EnvVars: []string{"SGLOAD_REPLAY_EVENT_TYPES"},
				Usage: "load only these event types (tables), repeatable or comma-separated"},
			&cli.BoolFlag{Name: "events-only", EnvVars: []string{"SGLOAD_REPLAY_EVENTS_ONLY"},
				Usage: "leave synced object snapshots out"},
			&cli.BoolFlag{Name: "from-start", EnvVars: []string{"SGLOAD_REPLAY_FROM_START"},
				Usage: "replay every kept segment, not only those after the last replay into this destination"},
			&cli.BoolFlag{Name: "dry-run", EnvVars: []string{"SGLOAD_DRY_RUN"},
				Usage: "convert the first plan and report, but upload and change nothing"},
			jsonFlag("summary"),
			progressFlag(),
		), flushTuningFlags()...),
		Action: runReplay,
	}
}

func runReplay(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	opts, closeBucket, err := loaderOptions(c)
	if err != nil {
		return err
	}
	defer closeBucket()
	tune(c, &opts)
	opts.Logger, opts.DryRun, opts.Crash = log.With("component", "replay"), c.Bool("dry-run"), crashAt[loader.Step]()
	r := loader.ReplayOptions{FromStart: c.Bool("from-start")}
	r.Types = c.StringSlice("event-type")
	r.EventsOnly = c.Bool("events-only") || len(r.Types) > 0
	if t := c.Timestamp("since"); t != nil {
		r.Since = *t
	}
	if t := c.Timestamp("until"); t != nil {
		r.Until = *t
	}
	if !r.Since.IsZero() && !r.Until.IsZero() && !r.Since.Before(r.Until) {
		return usageError(fmt.Errorf("--since %s is not before --until %s", r.Since.Format(time.RFC3339), r.Until.Format(time.RFC3339)), "")
	}
	var prog *progressLine
	if showProgress(c) {
		prog = &progressLine{line: stderrOf(c)}
		opts.Progress = prog.update
	}
	sum, err := loader.Replay(c.Context, opts, r)
	prog.done()
	if err != nil {
		return flushFailure(err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, sum)
	}
	line := summaryLine(sum)
	if sum.NothingToFlush() {
		line = "nothing to replay: no committed segment kept in done/ after the last replay into this destination (--from-start replays all)"
	}
	fmt.Fprintf(c.App.Writer, "%s; %d events left out by --since/--until/--event-type\n", line, sum.Skipped)
	return nil
}

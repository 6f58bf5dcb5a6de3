package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/spool"
)

func flushCommand() *cli.Command {
	return &cli.Command{
		Name:  "flush",
		Usage: "convert sealed spool segments into partitioned Parquet in a bucket, exactly once",
		Description: "Run it from cron, Airflow or a Kubernetes CronJob. Each plan of segments is journaled,\n" +
			"converted, uploaded and committed by a manifest; a rerun after any crash finishes or redoes\n" +
			"the plan, so the bucket ends with every event once. Exit codes: 0 done (also when there is\n" +
			"nothing to flush), 1 failed (rerun), 2 bad flags, 4 another flush holds the spool's lock.",
		OnUsageError: onUsageError,
		Flags: append(append([]cli.Flag{spoolFlag()}, bucketFlags()...),
			nodeFlag("node id in object names (default: the spool's)"),
			&cli.BoolFlag{Name: "dry-run", EnvVars: []string{"SGLOAD_DRY_RUN"},
				Usage: "convert the next plan and report, but upload and change nothing"},
			jsonFlag("summary"),
			progressFlag(),
			&cli.GenericFlag{Name: "max-plan-bytes", Value: sizeFlag(256 << 20), EnvVars: []string{"SGLOAD_MAX_PLAN_BYTES"}, Category: "Tuning:",
				Usage: "spool bytes per plan (commit unit); memory for dedupe keys grows with it"},
			&cli.GenericFlag{Name: "target-file-bytes", Value: sizeFlag(256 << 20), EnvVars: []string{"SGLOAD_TARGET_FILE_BYTES"}, Category: "Tuning:",
				Usage: "roll to a new Parquet file at this encoded size"},
			&cli.GenericFlag{Name: "row-group-bytes", Value: sizeFlag(8 << 20), EnvVars: []string{"SGLOAD_ROW_GROUP_BYTES"}, Category: "Tuning:",
				Usage: "end a row group when its rows take this much memory before encoding"},
			&cli.GenericFlag{Name: "memory-bytes", Value: sizeFlag(32 << 20), EnvVars: []string{"SGLOAD_MEMORY_BYTES"}, Category: "Tuning:",
				Usage: "rows buffered across all partitions before the largest is written out"},
			&cli.GenericFlag{Name: "memory-limit", Value: sizeFlag(224 << 20), EnvVars: []string{"SGLOAD_MEMORY_LIMIT"}, Category: "Tuning:",
				Usage: "soft limit for the Go heap (GOMEMLIMIT, which wins when set); 0 for none"},
			&cli.DurationFlag{Name: "dedupe-window", Value: 72 * time.Hour, EnvVars: []string{"SGLOAD_DEDUPE_WINDOW"}, Category: "Tuning:",
				Usage: "how long event keys are remembered to drop later duplicates"},
			&cli.DurationFlag{Name: "retain", Value: 72 * time.Hour, EnvVars: []string{"SGLOAD_RETAIN"}, Category: "Tuning:",
				Usage: "keep committed segments in SPOOL/done this long"},
		),
		Action: runFlush,
	}
}

func runFlush(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	log = log.With("component", "flush")
	if lim := sizeValue(c, "memory-limit"); lim > 0 && os.Getenv("GOMEMLIMIT") == "" {
		// Flush's own buffers are bounded by the flags above; the limit keeps
		// the garbage collector from letting the heap float to twice that.
		debug.SetMemoryLimit(lim)
	}
	opts, closeBucket, err := loaderOptions(c)
	if err != nil {
		return err
	}
	defer closeBucket()
	opts.MaxPlanBytes = sizeValue(c, "max-plan-bytes")
	opts.TargetFileBytes = sizeValue(c, "target-file-bytes")
	opts.RowGroupBytes = sizeValue(c, "row-group-bytes")
	opts.MemoryBytes = sizeValue(c, "memory-bytes")
	opts.DedupeWindow = c.Duration("dedupe-window")
	opts.Retain = c.Duration("retain")
	opts.DryRun = c.Bool("dry-run")
	opts.Logger = log
	opts.Crash = crashPoint()
	var prog *progressLine
	if showProgress(c) {
		prog = &progressLine{w: c.App.ErrWriter}
		opts.Progress = prog.update
	}
	sum, err := loader.Flush(c.Context, opts)
	prog.done()
	if err != nil {
		switch {
		case errors.Is(err, spool.ErrBusy):
			return err // exitCode maps it
		case errors.Is(err, bucket.ErrStalled):
			return failure(err, "the bucket stopped answering (no progress for --bucket-timeout); the lock is released: "+
				"once the store answers again, rerun sgload flush, which finishes or redoes the interrupted plan")
		case errors.Is(err, loader.ErrPreflight):
			return failure(err, "check the bucket exists and the credentials in the environment can write, read and delete in it")
		}
		return failure(err, "rerun sgload flush: it finishes or redoes the interrupted plan")
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, sum)
	}
	fmt.Fprintln(c.App.Writer, summaryLine(sum))
	return nil
}

func summaryLine(s *loader.Summary) string {
	if s.NothingToFlush() {
		return "nothing to flush"
	}
	verb := "flushed"
	if s.DryRun {
		verb = "dry run: would flush"
	}
	tables := make([]string, 0, len(s.Tables))
	for t := range s.Tables {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	return fmt.Sprintf("%s %s events from %d segments (%s) in %s: %s rows in %d files (%s), %d tables; %s duplicates dropped; %s rows with _errors; %s quarantined",
		verb, count(s.Events), s.Segments, mb(s.SpoolBytes), s.Duration.Round(10*time.Millisecond),
		count(s.Rows), s.Files, mb(s.Bytes), len(tables), count(s.Duplicates), count(s.RowsWithErrors), count(s.Quarantined))
}

func count(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func showProgress(c *cli.Context) bool {
	switch c.String("progress") {
	case "always":
		return true
	case "never":
		return false
	}
	f, ok := c.App.ErrWriter.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// loaderOptions are the flush options flush and run both take from their
// flags; flush adds its tuning flags. closeBucket closes the bucket.
func loaderOptions(c *cli.Context) (opts loader.Options, closeBucket func(), err error) {
	d, err := openSpool(c)
	if err != nil {
		return opts, nil, err
	}
	b, err := openBucket(c.Context, c)
	if err != nil {
		return opts, nil, err
	}
	return loader.Options{Spool: d, Bucket: b, Prefix: prefix(c), Node: c.String("node"), Version: version},
		func() { _ = b.Close() }, nil
}

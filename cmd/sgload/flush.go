package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

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
		Flags: append(append(append([]cli.Flag{spoolFlag()}, bucketFlags()...),
			nodeFlag("node id in object names (default: the spool's)"),
			&cli.BoolFlag{Name: "dry-run", EnvVars: []string{"SGLOAD_DRY_RUN"},
				Usage: "convert the next plan and report, but upload and change nothing"},
			jsonFlag("summary"),
			progressFlag(),
			metricsFileFlag("flush"),
		), flushTuningFlags()...),
		Action: runFlush,
	}
}

func runFlush(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	log = log.With("component", "flush")
	opts, closeBucket, err := loaderOptions(c)
	if err != nil {
		recordFlush(c, nil, err) // a run that could not start failed too
		return err
	}
	defer closeBucket()
	tune(c, &opts)
	opts.DryRun = c.Bool("dry-run")
	opts.Logger = log
	opts.Crash = crashAt[loader.Step]()
	var prog *progressLine
	if showProgress(c) {
		prog = &progressLine{line: stderrOf(c)}
		opts.Progress = prog.update
	}
	sum, err := loader.Flush(c.Context, opts)
	prog.done()
	recordFlush(c, sum, err)
	if err != nil {
		return flushFailure(err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, sum)
	}
	fmt.Fprintln(c.App.Writer, summaryLine(sum))
	return nil
}

// flushTuningFlags are the tuning flags of flush and replay.
func flushTuningFlags() []cli.Flag {
	return []cli.Flag{
		&cli.GenericFlag{Name: "max-plan-bytes", Value: sizeFlag(256 << 20), EnvVars: []string{"SGLOAD_MAX_PLAN_BYTES"}, Category: "Tuning:",
			Usage: "spool bytes per plan (commit unit); memory for dedupe keys grows with it"},
		&cli.GenericFlag{Name: "target-file-bytes", Value: sizeFlag(256 << 20), EnvVars: []string{"SGLOAD_TARGET_FILE_BYTES"}, Category: "Tuning:",
			Usage: "roll to a new Parquet file at this encoded size"},
		&cli.IntFlag{Name: "row-group-rows", Value: 64 << 10, EnvVars: []string{"SGLOAD_ROW_GROUP_ROWS"}, Category: "Tuning:",
			Usage: "end a row group at this many rows"},
		&cli.GenericFlag{Name: "row-group-bytes", Value: sizeFlag(96 << 20), EnvVars: []string{"SGLOAD_ROW_GROUP_BYTES"}, Category: "Tuning:",
			Usage: "or once its rows took this much memory before encoding (it holds about a quarter of that, compressed, while written)"},
		// Before rows were written partition by partition, this bounded the
		// rows held across partitions; accepted so that configurations
		// naming it keep working.
		&cli.GenericFlag{Name: "memory-bytes", Value: sizeFlag(32 << 20), EnvVars: []string{"SGLOAD_MEMORY_BYTES"}, Category: "Tuning:",
			Hidden: true, Usage: "no longer used"},
		memoryLimitFlag(),
		&cli.DurationFlag{Name: "dedupe-window", Value: 72 * time.Hour, EnvVars: []string{"SGLOAD_DEDUPE_WINDOW"}, Category: "Tuning:",
			Usage: "how long event keys are remembered to drop later duplicates"},
		&cli.DurationFlag{Name: "retain", Value: 72 * time.Hour, EnvVars: []string{"SGLOAD_RETAIN"}, Category: "Tuning:",
			Usage: "keep committed segments in SPOOL/done this long"},
	}
}

// tune applies flushTuningFlags.
func tune(c *cli.Context, opts *loader.Options) {
	opts.MaxPlanBytes = sizeValue(c, "max-plan-bytes")
	opts.TargetFileBytes = sizeValue(c, "target-file-bytes")
	opts.RowGroupRows = c.Int("row-group-rows")
	opts.RowGroupBytes = sizeValue(c, "row-group-bytes")
	opts.DedupeWindow = c.Duration("dedupe-window")
	opts.Retain = c.Duration("retain")
	setMemoryLimit(c)
}

func memoryLimitFlag() cli.Flag {
	return &cli.GenericFlag{Name: "memory-limit", Value: sizeFlag(224 << 20), EnvVars: []string{"SGLOAD_MEMORY_LIMIT"}, Category: "Tuning:",
		Usage: "soft limit for the Go heap (GOMEMLIMIT, which wins when set); 0 for none"}
}

// setMemoryLimit applies --memory-limit. The commands' own buffers are
// bounded by their flags; the limit keeps the garbage collector from
// letting the heap float to twice that.
func setMemoryLimit(c *cli.Context) {
	if lim := sizeValue(c, "memory-limit"); lim > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(lim)
	}
}

// flushFailure maps a failed flush or replay to its exit code and hint.
func flushFailure(err error) error {
	switch {
	case errors.Is(err, spool.ErrBusy):
		return err // exitCode maps it
	case errors.Is(err, bucket.ErrStalled):
		return failure(err, "the bucket stopped answering (no progress for --bucket-timeout); the lock is released: "+
			"once the store answers again, rerun sgload flush, which finishes or redoes the interrupted plan")
	case errors.Is(err, loader.ErrPreflight):
		return failure(err, "check the bucket exists and the credentials in the environment can write, read and delete in it")
	case errors.Is(err, loader.ErrOtherDestination):
		return usageError(err, "")
	}
	return failure(err, "rerun: it finishes or redoes the interrupted plan")
}

func summaryLine(s *loader.Summary) string {
	if s.NothingToFlush() {
		if s.OpenEvents > 0 {
			return fmt.Sprintf("nothing to flush: %s events (%s) wait in the open segment; serve seals it at --segment-age or --segment-bytes, and the next flush takes them",
				count(s.OpenEvents), size(s.OpenBytes))
		}
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
		verb, count(s.Events), s.Segments, size(s.SpoolBytes), s.Duration.Round(10*time.Millisecond),
		count(s.Rows), s.Files, size(s.Bytes), len(tables), count(s.Duplicates), count(s.RowsWithErrors), count(s.Quarantined))
}

// count is n with thousands separators: 1,990,083.
func count(n int64) string { return humanize.Comma(n) }

// size is n bytes in SI units, as disks are sold and df -H shows: 891.6 MB.
func size(n int64) string { return humanize.BytesN(uint64(max(n, 0)), 3) }

func showProgress(c *cli.Context) bool {
	switch c.String("progress") {
	case "always":
		return true
	case "never":
		return false
	}
	return stderrOf(c).isTerminal()
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
	return loader.Options{Spool: d, Bucket: b, Prefix: prefix(c), Node: c.String("node"), Version: readBuildVersion().Version},
		func() { _ = b.Close() }, nil
}

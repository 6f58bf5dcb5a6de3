package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/rewrite"
)

func compactFlags() []cli.Flag {
	return []cli.Flag{
		&cli.GenericFlag{Name: "target-file-bytes", Value: sizeFlag(256 << 20), EnvVars: []string{"SGLOAD_COMPACT_TARGET_FILE_BYTES"}, Category: "Compaction:",
			Usage: "merge a partition's files smaller than this into files of about this size"},
		&cli.DurationFlag{Name: "min-age", Value: rewrite.DefaultMinAge, EnvVars: []string{"SGLOAD_COMPACT_MIN_AGE"}, Category: "Compaction:",
			Usage: "leave files younger than this for the next run"},
		&cli.DurationFlag{Name: "grace", Value: rewrite.DefaultGrace, EnvVars: []string{"SGLOAD_COMPACT_GRACE"}, Category: "Compaction:",
			Usage: "keep replaced files this long, so queries running at the commit finish (BigQuery allows 6 h)"},
		&cli.IntFlag{Name: "retain-days", EnvVars: []string{"SGLOAD_RETAIN_DAYS"}, Category: "Compaction:",
			Usage: "delete event partitions whose day is older than this many days (0: keep everything)"},
		&cli.DurationFlag{Name: "lease-ttl", Value: 10 * time.Minute, EnvVars: []string{"SGLOAD_LEASE_TTL"}, Category: "Compaction:",
			Usage: "a partition lease lapses this long after its holder last renewed it (a holder that dies)"},
		&cli.GenericFlag{Name: "sort-memory-bytes", Value: sizeFlag(48 << 20), EnvVars: []string{"SGLOAD_SORT_MEMORY_BYTES"}, Category: "Compaction:",
			Usage: "rows held in memory while sorting a partition; the rest is sorted in runs on local disk"},
		&cli.StringFlag{Name: "work-dir", EnvVars: []string{"SGLOAD_WORK_DIR"}, Category: "Compaction:",
			Usage: "local folder for sort runs and files before upload (default: the system's temp folder)"},
	}
}

func compactCommand() *cli.Command {
	return &cli.Command{
		Name:  "compact",
		Usage: "merge each partition's small files into few large ones sorted by time; apply retention",
		Description: "For each partition (event type and day, object table and day) holding two or more\n" +
			"committed files below --target-file-bytes and older than --min-age, writes them again as files\n" +
			"of about that size, sorted by timestamp then _sequence, with duplicates across nodes removed\n" +
			"by the dedupe rule. A rewrite manifest commits each partition; the replaced files are deleted\n" +
			"by a later run once --grace has passed, and the views show every event once meanwhile.\n" +
			"Partitions are leased in the bucket, so several compactors and flushes can run at once.\n" +
			"Exit codes: 0 done, 1 failed (rerun: it finishes or undoes what was interrupted), 2 bad flags.",
		OnUsageError: onUsageError,
		Flags:        append(append(bucketFlags(), compactFlags()...), memoryLimitFlag(), jsonFlag("summary"), progressFlag(), metricsFileFlag("compact")),
		Action:       runCompact,
	}
}

func rewriteOptions(c *cli.Context) (rewrite.Options, func(), error) {
	b, err := openBucket(c.Context, c)
	if err != nil {
		return rewrite.Options{}, nil, err
	}
	if d := c.String("work-dir"); d != "" {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			_ = b.Close()
			return rewrite.Options{}, nil, usageError(fmt.Errorf("--work-dir %s is not a folder", d), "")
		}
	}
	return rewrite.Options{
		Bucket: b, Prefix: prefix(c), TargetFileBytes: sizeValue(c, "target-file-bytes"), MinAge: c.Duration("min-age"),
		Grace: c.Duration("grace"), RetainDays: c.Int("retain-days"), LeaseTTL: c.Duration("lease-ttl"),
		MemoryBytes: sizeValue(c, "sort-memory-bytes"), WorkDir: c.String("work-dir"), Version: version,
	}, func() { _ = b.Close() }, nil
}

func runCompact(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	o, closeBucket, err := rewriteOptions(c)
	if err != nil {
		return err
	}
	defer closeBucket()
	setMemoryLimit(c)
	if c.Int("retain-days") < 0 {
		return usageError(fmt.Errorf("--retain-days %d", c.Int("retain-days")), "use a number of days, or 0 to keep everything")
	}
	o.Logger = log.With("component", "compact")
	o.Crash = crashAt[rewrite.Step]()
	var prog *progressLine
	if showProgress(c) {
		prog = &progressLine{line: stderrOf(c)}
		o.Progress = func(p rewrite.Progress) {
			prog.show(fmt.Sprintf("partition %d/%d %s", p.Done+1, p.Of, p.Partition))
		}
	}
	sum, err := rewrite.Compact(c.Context, o)
	prog.done()
	writeMetricsFile(c, "compact", compactResult(sum, err))
	if err != nil {
		return failure(err, "rerun sgload compact: it finishes or undoes what was interrupted")
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, sum)
	}
	fmt.Fprintf(c.App.Writer, "compacted %d partitions: %d files (%s) into %d (%s), %s rows, %s duplicates dropped; "+
		"%d partitions retired; %d replaced files deleted; %d partitions leased elsewhere; in %.1fs\n",
		sum.Partitions, sum.FilesBefore, size(sum.BytesBefore), sum.FilesAfter, size(sum.BytesAfter), count(sum.RowsOut),
		count(sum.Duplicates), sum.Retired, sum.InputsDeleted, sum.Leased, sum.Seconds)
	return nil
}

package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/rewrite"
)

func rebuildCommand() *cli.Command {
	return &cli.Command{
		Name:  "rebuild",
		Usage: "re-derive a prefix's rows from their _raw with this release's schema, into a new prefix",
		Description: "After an upgrade that types a new field or fixes a coercion, rebuild gives the whole history\n" +
			"the new columns without the spool: every row of --bucket/--prefix is mapped again from _raw\n" +
			"(keeping _sequence, _received_at, _node) into --to-prefix (in --to-bucket, default the same\n" +
			"bucket), partition by partition, each committed by a manifest. The source is only read. A\n" +
			"killed rebuild, run again, goes on where it stopped. Switch flush and the views to the new\n" +
			"prefix when it is done (README, Rebuild). Exit codes: 0 done, 1 failed (rerun), 2 bad flags.",
		OnUsageError: onUsageError,
		Flags: append(append(bucketFlags(),
			&cli.StringFlag{Name: "to-prefix", EnvVars: []string{"SGLOAD_TO_PREFIX"}, Usage: "the new prefix to write (required)"},
			&cli.StringFlag{Name: "to-bucket", EnvVars: []string{"SGLOAD_TO_BUCKET"}, Usage: "the bucket of the new prefix (default: --bucket)"},
			&cli.GenericFlag{Name: "target-file-bytes", Value: sizeFlag(256 << 20), EnvVars: []string{"SGLOAD_TARGET_FILE_BYTES"},
				Usage: "roll to a new Parquet file at this encoded size"},
			&cli.StringFlag{Name: "work-dir", EnvVars: []string{"SGLOAD_WORK_DIR"}, Usage: "local folder for files before upload (default: the system's temp folder)"},
		), memoryLimitFlag(), jsonFlag("summary"), progressFlag()),
		Action: runRebuild,
	}
}

func runRebuild(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	setMemoryLimit(c)
	if c.String("to-prefix") == "" && c.String("to-bucket") == "" {
		return usageError(fmt.Errorf("--to-prefix is required"), "rebuild writes a new prefix and leaves --prefix as it is")
	}
	from, err := openBucket(c.Context, c)
	if err != nil {
		return err
	}
	defer from.Close()
	to := from
	if u := c.String("to-bucket"); u != "" {
		if to, err = bucket.Open(c.Context, u); err != nil {
			return usageError(fmt.Errorf("--to-bucket: %w", err), "")
		}
		defer to.Close()
	}
	o := rewrite.RebuildOptions{From: from, FromPrefix: prefix(c), To: to, ToPrefix: trimSlashes(c.String("to-prefix"))}
	o.TargetFileBytes, o.WorkDir, o.Version = sizeValue(c, "target-file-bytes"), c.String("work-dir"), version
	o.Logger, o.Crash = log.With("component", "rebuild"), crashAt[rewrite.Step]()
	var prog *progressLine
	if showProgress(c) {
		prog = &progressLine{line: stderrOf(c)}
		o.Progress = func(p rewrite.Progress) { prog.show(fmt.Sprintf("partition %d/%d %s", p.Done+1, p.Of, p.Partition)) }
	}
	sum, err := rewrite.Rebuild(c.Context, o)
	prog.done()
	if err != nil {
		return failure(err, "rerun sgload rebuild: it goes on where it stopped")
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, sum)
	}
	fmt.Fprintf(c.App.Writer, "rebuilt %d partitions (%d done before) into %s: %s rows in %d files (%s), %s rows with _errors, in %.1fs\n",
		sum.Partitions, sum.Resumed, o.ToPrefix, count(sum.Rows), sum.Files, size(sum.Bytes), count(sum.Errors), sum.Seconds)
	return nil
}

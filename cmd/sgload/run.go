package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/internal/jobmetrics"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/rewrite"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/status"
)

func runCommand() *cli.Command {
	flags := serveFlags()
	flags = append(flags, bucketFlags()...)
	flags = append(flags,
		&cli.DurationFlag{Name: "flush-interval", Value: time.Minute, EnvVars: []string{"SGLOAD_FLUSH_INTERVAL"},
			Usage: "flush sealed segments to the bucket this often"},
		&cli.DurationFlag{Name: "compact-interval", Value: time.Hour, EnvVars: []string{"SGLOAD_COMPACT_INTERVAL"},
			Usage: "compact the bucket's partitions this often (0: never; see sgload compact --help)"})
	flags = append(flags, compactFlags()...)
	return &cli.Command{
		Name:  "run",
		Usage: "serve, flush and compact in one process, for small installs and trying sgload out",
		Description: "Everything sgload serve does, plus a flush to --bucket every --flush-interval and a\n" +
			"compaction every --compact-interval. Larger installs run serve as a service and flush and\n" +
			"compact from cron or Airflow instead.",
		OnUsageError: onUsageError,
		Flags:        flags,
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			// serve creates the spool; flush needs it to exist.
			if _, err := spool.Create(c.String("spool")); err != nil {
				return failure(err, "check that --spool names a writable local folder")
			}
			opts, closeBucket, err := loaderOptions(c)
			if err != nil {
				return err
			}
			defer closeBucket()
			reg := prometheus.NewRegistry()
			metrics := jobmetrics.New(reg)
			st := status.Options{Bucket: opts.Bucket, Prefix: opts.Prefix, Node: opts.Node}
			opts.Logger = log.With("component", "flush")
			jobs := []func(context.Context){every(c.Duration("flush-interval"), func(ctx context.Context) {
				sum, err := loader.Flush(ctx, opts)
				if !errors.Is(err, context.Canceled) {
					metrics.Record("flush", flushResult(sum, err))
				}
				switch {
				case err != nil && !errors.Is(err, context.Canceled):
					opts.Logger.Error("flush failed; the next one retries", "err", err)
				case err == nil && !sum.NothingToFlush():
					opts.Logger.Info(summaryLine(sum))
				}
			})}
			if iv := c.Duration("compact-interval"); iv > 0 {
				ro, closeRewrite, err := rewriteOptions(c)
				if err != nil {
					return err
				}
				defer closeRewrite()
				ro.Logger = log.With("component", "compact")
				jobs = append(jobs, every(iv, func(ctx context.Context) {
					sum, err := compactOnce(ctx, ro)
					if !errors.Is(err, context.Canceled) {
						metrics.Record("compact", compactResult(sum, err))
					}
				}))
			}
			return runServer(c, log.With("component", "serve"), reg, st, jobs...)
		},
	}
}

// every runs fn each interval until ctx ends.
func every(interval time.Duration, fn func(context.Context)) func(context.Context) {
	return func(ctx context.Context) {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			fn(ctx)
		}
	}
}

func compactOnce(ctx context.Context, o rewrite.Options) (*rewrite.Summary, error) {
	sum, err := rewrite.Compact(ctx, o)
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		o.Logger.Error("compaction failed; the next one retries", "err", err)
	case err == nil && (sum.Partitions > 0 || sum.Retired > 0 || sum.InputsDeleted > 0):
		o.Logger.Info("compacted", slog.Int("partitions", sum.Partitions), slog.Int("files_before", sum.FilesBefore),
			slog.Int("files_after", sum.FilesAfter), slog.Int64("duplicates", sum.Duplicates),
			slog.Int("retired", sum.Retired), slog.Int("inputs_deleted", sum.InputsDeleted))
	}
	return sum, err
}

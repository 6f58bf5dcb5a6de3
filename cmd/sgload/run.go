package main

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/internal/jobmetrics"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/status"
)

func runCommand() *cli.Command {
	flags := serveFlags()
	flags = append(flags, bucketFlags()...)
	flags = append(flags, &cli.DurationFlag{Name: "flush-interval", Value: time.Minute, EnvVars: []string{"SGLOAD_FLUSH_INTERVAL"},
		Usage: "flush sealed segments to the bucket this often"})
	return &cli.Command{
		Name:  "run",
		Usage: "serve and flush in one process, for small installs and trying sgload out",
		Description: "Everything sgload serve does, plus a flush to --bucket every --flush-interval.\n" +
			"Larger installs run serve as a service and flush from cron or Airflow instead.",
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
			jobs := jobmetrics.New(reg)
			st := status.Options{Bucket: opts.Bucket, Prefix: opts.Prefix, Node: opts.Node}
			return runServer(c, log.With("component", "serve"), reg, st, func(ctx context.Context) {
				opts.Logger = log.With("component", "flush")
				tick := time.NewTicker(c.Duration("flush-interval"))
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					sum, err := loader.Flush(ctx, opts)
					if !errors.Is(err, context.Canceled) {
						jobs.Record("flush", flushResult(sum, err))
					}
					switch {
					case err != nil && !errors.Is(err, context.Canceled):
						log.Error("flush failed; the next one retries", "err", err)
					case err == nil && !sum.NothingToFlush():
						log.Info(summaryLine(sum))
					}
				}
			})
		},
	}
}

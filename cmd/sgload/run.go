package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/loader"
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
			b, err := openBucket(c.Context, c)
			if err != nil {
				return err
			}
			defer b.Close()
			opts := b.loaderOptions(c)
			return runServer(c, func(ctx context.Context, log *slog.Logger) {
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

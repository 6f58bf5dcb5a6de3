package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/internal/jobmetrics"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/objectsync"
	"github.com/sgload/sgload/rewrite"
)

// metricsFileFlag is --metrics-file for jobs run from cron.
func metricsFileFlag(job string) cli.Flag {
	return &cli.StringFlag{Name: "metrics-file", EnvVars: []string{"SGLOAD_" + upper(job) + "_METRICS_FILE"},
		Usage: "after each run, write Prometheus metrics (last success time, rows, bytes, duration) to this node_exporter textfile, e.g. /var/lib/node_exporter/textfile_collector/sgload_" + job + ".prom"}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// flushResult is a flush's outcome as job metrics.
func flushResult(sum *loader.Summary, err error) jobmetrics.Result {
	r := jobmetrics.Result{OK: err == nil, At: time.Now()}
	if sum != nil {
		r.Duration, r.Rows, r.Bytes = sum.Duration, sum.Rows, sum.Bytes
	}
	return r
}

// compactResult is a compaction's outcome as job metrics.
func compactResult(sum *rewrite.Summary, err error) jobmetrics.Result {
	r := jobmetrics.Result{OK: err == nil, At: time.Now()}
	if sum != nil {
		r.Duration = time.Duration(sum.Seconds * float64(time.Second))
		r.Rows, r.Bytes = sum.RowsOut, sum.BytesAfter
	}
	return r
}

// syncResult is a sync's outcome: it succeeded when no collection failed.
func syncResult(sum *objectsync.Summary, err error, took time.Duration) jobmetrics.Result {
	r := jobmetrics.Result{OK: err == nil, At: time.Now(), Duration: took}
	if sum != nil {
		r.OK = r.OK && len(sum.Failed) == 0
		for _, c := range sum.Results {
			r.Rows += int64(c.Rows)
		}
	}
	return r
}

// writeMetricsFile writes the textfile when --metrics-file is set. A
// failure to write it is logged, not fatal: the job itself is done.
func writeMetricsFile(c *cli.Context, job string, r jobmetrics.Result) {
	path := c.String("metrics-file")
	if path == "" {
		return
	}
	if err := jobmetrics.WriteTextfile(path, job, r); err != nil {
		if log, lerr := newLogger(c); lerr == nil {
			log.Error("write metrics file", "err", err)
		}
	}
}

// recordFlush is flush's --metrics-file.
func recordFlush(c *cli.Context, sum *loader.Summary, err error) {
	if busy(err) {
		return // another flush is running and will write its own
	}
	writeMetricsFile(c, "flush", flushResult(sum, err))
}

// Command sgload-bench measures sgload's hot paths against a baseline taken
// in the same run: `ingest` (signed POSTs vs. the disk's own fsync rate),
// `hostile` (signed
// POSTs under attack vs. the same POSTs alone), `flush` (flush vs. DuckDB's
// one-pass NDJSON-to-Parquet job) and `compact` (compaction vs. DuckDB's
// sorted merge, and queries before and after). The make bench-* targets run
// it; BENCHMARKS.md records the results.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sgload-bench ingest|hostile|flush|compact|spool [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "ingest":
		err = benchIngest(ctx, os.Args[2:])
	case "hostile":
		err = benchHostile(ctx, os.Args[2:])
	case "spool":
		err = makeSpool(ctx, os.Args[2:])
	case "flush":
		err = benchFlush(ctx, os.Args[2:])
	case "duckdb-copy":
		err = duckCopy(os.Args[2:])
	case "compact":
		err = benchCompact(ctx, os.Args[2:])
	case "duckdb-merge":
		err = duckMerge(os.Args[2:])
	case "duckdb-queries":
		err = duckQueries(os.Args[2:])
	default:
		err = fmt.Errorf("unknown benchmark %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// The shape of the spools the benchmarks write: bodies as large as
// SendGrid's, segments as large as serve's default.
const (
	postBytes    = 768 << 10
	segmentBytes = 64 << 20
)

// makeSpool writes a spool for profiling flush by hand:
// sgload-bench spool -events E -spool DIR; sgload --cpu-profile P flush --spool DIR ...
func makeSpool(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("spool", flag.ExitOnError)
	events := fs.String("events", "", "NDJSON events")
	dir := fs.String("spool", "", "spool folder to fill")
	fs.Parse(args)
	batches, err := loadBatches(*events, postBytes)
	if err != nil {
		return err
	}
	n, err := writeSpool(ctx, *dir, batches, segmentBytes)
	fmt.Printf("wrote %d events in %d POSTs to %s\n", n, len(batches), *dir)
	return err
}

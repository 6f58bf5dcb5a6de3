package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sgload/sgload/spool"
)

// queries are the three typical questions asked of the bucket, timed
// before and after compaction.
var benchQueries = []struct{ name, sql string }{
	{"events per type per day", `SELECT event_type, dt, count(*) FROM ev GROUP BY ALL ORDER BY ALL`},
	{"one message's history", `SELECT "timestamp", event_type, email FROM ev WHERE sg_message_id = '%s' ORDER BY "timestamp"`},
	{"opens per campaign", `SELECT marketing_campaign_id, count(*) FROM ev WHERE event_type = 'open' GROUP BY 1 ORDER BY 2 DESC`},
}

// duckQueries runs the queries over the bucket folder in a child process
// (so its peak RSS is its own) and prints each one's seconds.
func duckQueries(args []string) error {
	dir, msg := args[0], args[1]
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	view := fmt.Sprintf(`CREATE VIEW ev AS SELECT * FROM read_parquet('%s/events/*/*/*.parquet', hive_partitioning = true)`, dir)
	if _, err := db.Exec(view); err != nil {
		return err
	}
	for _, q := range benchQueries {
		text := q.sql
		if strings.Contains(text, "%s") {
			text = fmt.Sprintf(text, msg)
		}
		// Queries of a few milliseconds: the median of five runs, after
		// one that warms DuckDB's caches, rather than a single sample.
		var secs []float64
		for i := range 6 {
			start := time.Now()
			rows, err := db.Query(text)
			if err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			for rows.Next() {
			}
			if err := rows.Err(); err != nil {
				return err
			}
			rows.Close()
			if i > 0 {
				secs = append(secs, time.Since(start).Seconds())
			}
		}
		sort.Float64s(secs)
		fmt.Printf("%.4f\n", secs[len(secs)/2])
	}
	return nil
}

// duckMerge is DuckDB doing compaction's job for every partition of the
// bucket folder in, into out: one file per partition, sorted by time.
func duckMerge(args []string) error {
	in, out := args[0], args[1]
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	var folders []string
	err = filepath.WalkDir(filepath.Join(in, "events"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "dt=") {
			folders = append(folders, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, f := range folders {
		rel, _ := filepath.Rel(in, f)
		dst := filepath.Join(out, rel)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		q := fmt.Sprintf(`COPY (SELECT * FROM read_parquet('%s/*.parquet') ORDER BY "timestamp", _sequence) TO '%s/merged.parquet' (FORMAT parquet, COMPRESSION zstd)`, f, dst)
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

var tsLine = regexp.MustCompile(`"timestamp":(\d+)`)

// benchCompact: a day of events flushed as 288 five-minute plans, then
// compacted by sgload and merged by DuckDB, with the queries timed before
// and after.
func benchCompact(ctx context.Context, args []string) error {
	fset := flag.NewFlagSet("compact", flag.ExitOnError)
	bin := fset.String("sgload", "", "sgload binary")
	events := fset.String("events", "", "NDJSON events spanning one day (scripts/gen_events.py --span-days 1)")
	dir := fset.String("dir", "", "scratch folder")
	slices := fset.Int("plans", 288, "five-minute plans in the day")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *events == "" || *dir == "" {
		return errors.New("-sgload, -events and -dir are required")
	}
	_ = os.RemoveAll(*dir)
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	// The day's events, in slices of equal time: each slice is posted, then
	// sealed as its own segment, so a flush makes one plan of each.
	lines, start, end, msg, err := readDay(*events)
	if err != nil {
		return err
	}
	width := (end - start + int64(*slices)) / int64(*slices)
	bySlice := make([][][]byte, *slices)
	for _, l := range lines {
		m := tsLine.FindSubmatch(l)
		ts, _ := strconv.ParseInt(string(m[1]), 10, 64)
		i := min(int((ts-start)/width), *slices-1)
		bySlice[i] = append(bySlice[i], l)
	}
	spoolDir := filepath.Join(*dir, "spool")
	total := 0
	for _, sl := range bySlice {
		if len(sl) == 0 {
			continue
		}
		n, err := writeSpool(ctx, spoolDir, frame(sl), segmentBytes)
		if err != nil {
			return err
		}
		total += n
	}
	segs, _ := spool.Dir{Root: spoolDir}.Sealed()
	bucket := filepath.Join(*dir, "bucket")
	flush := measure("sgload flush", bucket, exec.CommandContext(ctx, *bin, "--log-level", "warn", "flush", "--spool", spoolDir, "--bucket", bucket,
		"--max-plan-bytes", "1", "--progress", "never"))
	if flush.err != nil {
		return fmt.Errorf("flush: %w", flush.err)
	}
	filesBefore, parts := countFiles(bucket)
	fmt.Printf("input: %d events over one day, %d segments flushed as %d plans in %.1fs: %d files in %d partitions, %s\n\n",
		total, len(segs), len(segs), flush.elapsed.Seconds(), filesBefore, parts, mib(dirSize(bucket)))

	self, _ := os.Executable()
	before, err := timeQueries(ctx, self, bucket, msg)
	if err != nil {
		return err
	}
	copyDir := filepath.Join(*dir, "duckdb-in")
	if err := exec.CommandContext(ctx, "cp", "-a", bucket, copyDir).Run(); err != nil {
		return err
	}
	duck := measure("DuckDB merge (ORDER BY timestamp)", filepath.Join(*dir, "duckdb-out"),
		exec.CommandContext(ctx, self, "duckdb-merge", copyDir, filepath.Join(*dir, "duckdb-out")))
	if duck.err != nil {
		return fmt.Errorf("duckdb merge: %w", duck.err)
	}
	bytesBefore := dirSize(filepath.Join(bucket, "events"))
	compact := measure("sgload compact", bucket, exec.CommandContext(ctx, *bin, "--log-level", "warn", "compact", "--bucket", bucket, "--min-age", "0s",
		"--grace", "0s", "--progress", "never", "--work-dir", *dir))
	if compact.err != nil {
		return fmt.Errorf("compact: %w", compact.err)
	}
	filesAfter, _ := countFiles(bucket)
	after, err := timeQueries(ctx, self, bucket, msg)
	if err != nil {
		return err
	}
	rebuilt := filepath.Join(*dir, "rebuilt")
	rebuild := measure("sgload rebuild (the compacted day)", rebuilt, exec.CommandContext(ctx, *bin, "--log-level", "warn", "rebuild",
		"--bucket", bucket, "--to-bucket", rebuilt, "--to-prefix", "", "--progress", "never", "--work-dir", *dir))
	if rebuild.err != nil {
		return fmt.Errorf("rebuild: %w", rebuild.err)
	}
	mbps := func(r run) float64 { return float64(bytesBefore) / (1 << 20) / r.elapsed.Seconds() }
	fmt.Printf("%-36s %9s %9s %12s %10s\n", "merge", "seconds", "MiB/s in", "peak RSS", "output")
	for _, r := range []run{duck, compact} {
		fmt.Printf("%-36s %9.2f %9.1f %12s %10s\n", r.name, r.elapsed.Seconds(), mbps(r), mib(r.maxRSS), mib(dirSize(r.nameDir(bucket, *dir))))
	}
	fmt.Printf("\nsgload compact: %.2fx DuckDB's throughput; files %d -> %d (at most ceil(bytes/target) per partition: %v)\n\n",
		duck.elapsed.Seconds()/compact.elapsed.Seconds(), filesBefore, filesAfter, fewFiles(bucket, 256<<20))
	fmt.Printf("%-28s %12s %12s %8s\n", "query (DuckDB)", "before s", "after s", "faster")
	var tb, ta float64
	for i, q := range benchQueries {
		fmt.Printf("%-28s %12.4f %12.4f %7.1fx\n", q.name, before.secs[i], after.secs[i], before.secs[i]/after.secs[i])
		tb += before.secs[i]
		ta += after.secs[i]
	}
	fmt.Printf("%-28s %12.4f %12.4f %7.1fx   (peak RSS %s before, %s after)\n", "all three", tb, ta, tb/ta, mib(before.rss), mib(after.rss))
	fmt.Printf("\n%-36s %9.2f s, peak RSS %s, %s written\n", rebuild.name, rebuild.elapsed.Seconds(), mib(rebuild.maxRSS), mib(dirSize(rebuilt)))
	return nil
}

// nameDir is where a merge run wrote: DuckDB's output folder, or the bucket.
func (r run) nameDir(bucket, dir string) string {
	if strings.HasPrefix(r.name, "DuckDB") {
		return filepath.Join(dir, "duckdb-out")
	}
	return filepath.Join(bucket, "events")
}

type queryTimes struct {
	secs []float64
	rss  int64
}

// timeQueries runs the queries twice in a child process and keeps the
// second, warm, timings (the files are in the page cache either way); each
// timing is the median of five runs (duckQueries).
func timeQueries(ctx context.Context, self, bucket, msg string) (queryTimes, error) {
	var qt queryTimes
	for range 2 {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, self, "duckdb-queries", bucket, msg)
		cmd.Stdout = &out
		r := measure("queries", "", cmd)
		if r.err != nil {
			return qt, fmt.Errorf("queries: %w", r.err)
		}
		qt.secs, qt.rss = nil, r.maxRSS
		for _, f := range strings.Fields(out.String()) {
			v, _ := strconv.ParseFloat(f, 64)
			qt.secs = append(qt.secs, v)
		}
	}
	return qt, nil
}

// readDay reads the events and their time span, and picks a message id
// from the middle of the day for the history query.
func readDay(path string) (lines [][]byte, start, end int64, msg string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	msgRE := regexp.MustCompile(`"sg_message_id":"([^"]+)"`)
	for sc.Scan() {
		l := bytes.Clone(sc.Bytes())
		m := tsLine.FindSubmatch(l)
		if m == nil {
			continue
		}
		ts, _ := strconv.ParseInt(string(m[1]), 10, 64)
		if len(lines) == 0 || ts < start {
			start = ts
		}
		end = max(end, ts)
		lines = append(lines, l)
		if len(lines) == 1000 {
			if mm := msgRE.FindSubmatch(l); mm != nil {
				msg = string(mm[1])
			}
		}
	}
	return lines, start, end, msg, sc.Err()
}

// frame packs events into POST bodies as SendGrid frames them.
func frame(lines [][]byte) []batch {
	var out []batch
	for i := 0; i < len(lines); i += 500 {
		chunk := lines[i:min(i+500, len(lines))]
		body := append([]byte("["), bytes.Join(chunk, []byte(",\r\n"))...)
		out = append(out, batch{body: append(body, "\r\n]\r\n"...), events: len(chunk)})
	}
	return out
}

// countFiles counts the Parquet files and partitions of the bucket's events.
func countFiles(bucket string) (files, partitions int) {
	seen := map[string]bool{}
	_ = filepath.WalkDir(filepath.Join(bucket, "events"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			files++
			seen[filepath.Dir(p)] = true
		}
		return nil
	})
	return files, len(seen)
}

// fewFiles checks that no partition has more files than its bytes need.
func fewFiles(bucket string, target int64) bool {
	bytesOf, filesOf := map[string]int64{}, map[string]int{}
	_ = filepath.WalkDir(filepath.Join(bucket, "events"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			info, _ := d.Info()
			bytesOf[filepath.Dir(p)] += info.Size()
			filesOf[filepath.Dir(p)]++
		}
		return nil
	})
	var bad []string
	for p, n := range filesOf {
		if limit := int((bytesOf[p] + target - 1) / target); n > max(limit, 1) {
			bad = append(bad, p)
		}
	}
	sort.Strings(bad)
	return len(bad) == 0
}

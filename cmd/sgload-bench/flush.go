package main

import (
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

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/sgload/sgload/spool"
)

// duckColumns gives DuckDB's read_ndjson the column types explicitly, as
// sgload's schema does: left to infer from the first rows, DuckDB would
// drop keys it sees late, which is not the same work.
const duckColumns = `{email:'VARCHAR', "timestamp":'BIGINT', "smtp-id":'VARCHAR', event:'VARCHAR', category:'JSON',
 sg_event_id:'VARCHAR', sg_message_id:'VARCHAR', asm_group_id:'BIGINT', ip:'VARCHAR', useragent:'VARCHAR',
 tls:'BIGINT', cert_err:'BIGINT', reason:'VARCHAR', status:'VARCHAR', response:'VARCHAR', attempt:'VARCHAR',
 "type":'VARCHAR', bounce_classification:'VARCHAR', url:'VARCHAR', url_offset:'STRUCT(index BIGINT, type VARCHAR)',
 sg_machine_open:'BOOLEAN', sg_content_type:'VARCHAR', pool:'STRUCT(name VARCHAR, id BIGINT)',
 marketing_campaign_id:'BIGINT', marketing_campaign_name:'VARCHAR', marketing_campaign_version:'VARCHAR',
 marketing_campaign_split_id:'BIGINT', template_id:'VARCHAR', send_at:'BIGINT', domain:'VARCHAR'}`

// duckOnePassColumns are the typed columns of the one-pass query, each
// taken from the list json_extract_string returns for the line (the JSON
// path, the SQL type; objects and lists stay JSON text, as in duckColumns).
var duckOnePassColumns = [][2]string{
	{"email", "VARCHAR"}, {"timestamp", "BIGINT"}, {"smtp-id", "VARCHAR"}, {"event", "VARCHAR"}, {"category", "VARCHAR"},
	{"sg_event_id", "VARCHAR"}, {"sg_message_id", "VARCHAR"}, {"asm_group_id", "BIGINT"}, {"ip", "VARCHAR"}, {"useragent", "VARCHAR"},
	{"tls", "BIGINT"}, {"cert_err", "BIGINT"}, {"reason", "VARCHAR"}, {"status", "VARCHAR"}, {"response", "VARCHAR"}, {"attempt", "VARCHAR"},
	{"type", "VARCHAR"}, {"bounce_classification", "VARCHAR"}, {"url", "VARCHAR"}, {"url_offset", "VARCHAR"},
	{"sg_machine_open", "BOOLEAN"}, {"sg_content_type", "VARCHAR"}, {"pool", "VARCHAR"},
	{"marketing_campaign_id", "BIGINT"}, {"marketing_campaign_name", "VARCHAR"}, {"marketing_campaign_version", "VARCHAR"},
	{"marketing_campaign_split_id", "BIGINT"}, {"template_id", "VARCHAR"}, {"send_at", "BIGINT"}, {"domain", "VARCHAR"},
}

// onePassQuery is DuckDB doing sgload's job as well as it can (issue 16's
// yardstick): the file read once as lines, the typed columns taken with
// one json_extract_string of every path per line, the line kept as _raw.
func onePassQuery(in string) string {
	paths := make([]string, len(duckOnePassColumns))
	cols := make([]string, len(duckOnePassColumns))
	for i, c := range duckOnePassColumns {
		paths[i] = fmt.Sprintf(`'$."%s"'`, c[0])
		cols[i] = fmt.Sprintf(`TRY_CAST(v[%d] AS %s) AS "%s"`, i+1, c[1], c[0])
	}
	return fmt.Sprintf(`SELECT %s, raw AS _raw, strftime(to_timestamp(TRY_CAST(v[2] AS BIGINT)), '%%Y-%%m-%%d') AS dt
 FROM (SELECT raw, json_extract_string(raw, [%s]) AS v
 FROM read_csv('%s', columns={'raw':'VARCHAR'}, delim=E'\x01', quote='', escape='', header=false, auto_detect=false))`,
		strings.Join(cols, ", "), strings.Join(paths, ", "), in)
}

// duckCopy runs in a child process so that its peak RSS is its own.
func duckCopy(args []string) error {
	in, out, mode := args[0], args[1], args[2]
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	sel := fmt.Sprintf(`SELECT *, strftime(to_timestamp("timestamp"), '%%Y-%%m-%%d') AS dt FROM read_ndjson('%s', columns=%s)`, in, duckColumns)
	if mode == "onepass" {
		sel = onePassQuery(in)
	}
	_, err = db.Exec(fmt.Sprintf(`COPY (%s) TO '%s' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event, dt))`, sel, out))
	return err
}

type run struct {
	name    string
	elapsed time.Duration
	cpu     time.Duration // user + system, the child's own
	maxRSS  int64         // bytes
	out     int64         // bytes written
	err     error
}

// measure runs cmd and reports its time and peak RSS. The peak is read from
// /proc/<pid>/status (VmHWM) while it runs: wait4's ru_maxrss would count
// this harness's own memory, which the child shares until exec.
func measure(name string, out string, cmd *exec.Cmd) run {
	r := run{name: name}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if r.err = cmd.Start(); r.err != nil {
		return r
	}
	done, peak := make(chan struct{}), make(chan int64)
	go func() {
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		var max int64
		for {
			if hwm := vmHWM(status); hwm > max {
				max = hwm
			}
			select {
			case <-done:
				peak <- max
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	r.err = cmd.Wait()
	close(done)
	r.maxRSS = <-peak
	r.elapsed = time.Since(start)
	if ps := cmd.ProcessState; ps != nil {
		r.cpu = ps.UserTime() + ps.SystemTime()
	}
	r.out = dirSize(out)
	return r
}

func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	m := hwmRE.FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb * 1024
}

var hwmRE = regexp.MustCompile(`VmHWM:\s+(\d+) kB`)

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func benchFlush(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("flush", flag.ExitOnError)
	bin := fs.String("sgload", "", "sgload binary")
	events := fs.String("events", "", "NDJSON events (scripts/gen_events.py output)")
	dir := fs.String("dir", "", "scratch folder")
	scale := fs.Int("scale", 10, "also flush a spool this many times larger (1 or less: skip)")
	baseline := fs.String("baseline", "", "another sgload binary (an earlier release) to run in the same rounds: before and after in one run")
	fs.Parse(args)
	if *bin == "" || *events == "" || *dir == "" {
		return errors.New("-sgload, -events and -dir are required")
	}
	os.RemoveAll(*dir)
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	batches, err := loadBatches(*events, postBytes)
	if err != nil {
		return err
	}
	spoolDir := filepath.Join(*dir, "spool")
	n, err := writeSpool(ctx, spoolDir, batches, segmentBytes)
	if err != nil {
		return err
	}
	input := dirSize(filepath.Join(spoolDir, "events"))
	fmt.Printf("input: %d events, %s NDJSON, %s spool\n\n", n, mib(fileSize(*events)), mib(input))

	// Alternating, three rounds: DuckDB typed-only, DuckDB doing the same
	// job in one pass, sgload; each figure is its median, so that a burst of
	// other load on the machine moves one sample, not one contestant.
	self, _ := os.Executable()
	bucket := filepath.Join(*dir, "bucket")
	// A contestant prepares its output folder and returns its command.
	type contestant struct {
		name string
		cmd  func() (*exec.Cmd, string, error)
	}
	duck := func(name, mode string) contestant {
		return contestant{name, func() (*exec.Cmd, string, error) {
			out := filepath.Join(*dir, "duckdb-"+mode)
			return exec.CommandContext(ctx, self, "duckdb-copy", *events, out, mode), out, os.RemoveAll(out)
		}}
	}
	flushed := false // the spool has been flushed: put it back first
	sgloadFlush := func(name, bin string) contestant {
		return contestant{name, func() (*exec.Cmd, string, error) {
			var err error
			if flushed {
				err = resetSpool(spoolDir, bucket)
			}
			flushed = true
			return exec.CommandContext(ctx, bin, "flush", "--spool", spoolDir, "--bucket", bucket, "--progress", "never"), bucket, err
		}}
	}
	contestants := []contestant{duck("DuckDB COPY, typed only", "typed"), duck("DuckDB COPY, same job", "onepass"), sgloadFlush("sgload flush", *bin)}
	if *baseline != "" {
		contestants = append(contestants, sgloadFlush("sgload flush, -baseline binary", *baseline))
	}
	samples := make([][]run, len(contestants))
	for range 3 {
		for i, c := range contestants {
			cmd, out, err := c.cmd()
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			r := measure(c.name, out, cmd)
			if r.err != nil {
				return fmt.Errorf("%s: %w", c.name, r.err)
			}
			samples[i] = append(samples[i], r)
		}
	}
	runs := make([]run, len(contestants))
	for i, ss := range samples {
		sort.Slice(ss, func(a, b int) bool { return ss[a].elapsed < ss[b].elapsed })
		runs[i] = ss[1]
		sort.Slice(ss, func(a, b int) bool { return ss[a].cpu < ss[b].cpu })
		runs[i].cpu = ss[1].cpu
		runs[i].name += " (median of 3)"
	}
	typed, onePass, flush := runs[0], runs[1], runs[2]

	perM := func(r run, events int) float64 { return r.cpu.Seconds() / (float64(events) / 1e6) }

	fmt.Printf("%-34s %8s %9s %8s %10s %11s %9s\n", "run", "seconds", "sgload is", "CPU s", "CPU s/M ev", "peak RSS", "output")
	for _, r := range runs {
		fmt.Printf("%-34s %8.2f %8.2fx %8.2f %10.2f %11s %9s\n", r.name, r.elapsed.Seconds(), r.elapsed.Seconds()/flush.elapsed.Seconds(),
			r.cpu.Seconds(), perM(r, n), mib(r.maxRSS), mib(r.out))
	}
	fmt.Printf("\nsgload: %.2fx DuckDB's same-job throughput (goal 2.0x), %.2fx its typed-only COPY (goal 1.0x); output %.2fx DuckDB's same job (goal at most 1.0x)\n",
		onePass.elapsed.Seconds()/flush.elapsed.Seconds(), typed.elapsed.Seconds()/flush.elapsed.Seconds(), float64(flush.out)/float64(onePass.out))
	if *scale > 1 {
		big := filepath.Join(*dir, "spool-x"+strconv.Itoa(*scale))
		m, err := scaledSpool(ctx, big, batches, *scale)
		if err != nil {
			return err
		}
		os.RemoveAll(spoolDir)
		os.RemoveAll(bucket)
		bucket := filepath.Join(*dir, "bucket-x"+strconv.Itoa(*scale))
		r := measure(fmt.Sprintf("sgload flush, %dx data", *scale), bucket,
			exec.CommandContext(ctx, *bin, "flush", "--spool", big, "--bucket", bucket, "--progress", "never"))
		if r.err != nil {
			return r.err
		}
		fmt.Printf("%-34s %8.2f %8.2fx %8.2f %10.2f %11s %9s   (%d events, %s spool)\n", r.name, r.elapsed.Seconds(),
			r.elapsed.Seconds()/flush.elapsed.Seconds(), r.cpu.Seconds(), perM(r, m), mib(r.maxRSS), mib(r.out), m, mib(dirSize(filepath.Join(big, "done"))))
	}
	return nil
}

var (
	idRE = regexp.MustCompile(`"sg_event_id":"([^"]*)"`)
	tsRE = regexp.MustCompile(`"timestamp":(\d+)`)
)

// scaledSpool writes the batches k times, each copy with its own event ids
// and its events moved 3 days later per copy, so that nothing is a
// duplicate (by id or by content): k times the distinct events.
func scaledSpool(ctx context.Context, dir string, batches []batch, k int) (int, error) {
	var all []batch
	total := 0
	for c := range k {
		suffix := []byte(fmt.Sprintf("-x%d", c))
		for _, b := range batches {
			body := idRE.ReplaceAllFunc(b.body, func(m []byte) []byte {
				return append(append(m[:len(m)-1:len(m)-1], suffix...), '"')
			})
			body = tsRE.ReplaceAllFunc(body, func(m []byte) []byte {
				ts, _ := strconv.ParseInt(string(m[len(`"timestamp":`):]), 10, 64)
				return []byte(`"timestamp":` + strconv.FormatInt(ts+int64(c)*3*86400, 10))
			})
			all = append(all, batch{body: body, events: b.events})
		}
		if len(all) >= 200 { // keep memory flat while writing
			n, err := writeSpool(ctx, dir, all, segmentBytes)
			if err != nil {
				return 0, err
			}
			total += n
			all = all[:0]
		}
	}
	n, err := writeSpool(ctx, dir, all, segmentBytes)
	return total + n, err
}

// resetSpool undoes a flush: committed segments back into events/, no
// flush state or dedupe history, an empty bucket.
func resetSpool(spoolDir, bucket string) error {
	d := spool.Dir{Root: spoolDir}
	done := filepath.Join(d.Done(), spool.EventsDir)
	entries, err := os.ReadDir(done)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(done, e.Name()), filepath.Join(d.Events(), e.Name())); err != nil {
			return err
		}
	}
	for _, p := range []string{d.FlushJournal(), d.DedupeHistory(), bucket} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

func fileSize(p string) int64 {
	info, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return info.Size()
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

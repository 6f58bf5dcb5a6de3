package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

type batch struct {
	body   []byte
	events int
}

func benchIngest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	bin := fs.String("sgload", "", "sgload binary to benchmark")
	events := fs.String("events", "", "NDJSON events (scripts/gen_events.py output)")
	dir := fs.String("dir", "", "scratch folder on the disk to measure (default: a temp folder)")
	batchBytes := fs.Int("batch-bytes", postBytes, "batch size, as SendGrid sends")
	step := fs.Duration("step", 5*time.Second, "duration of each concurrency step")
	conc := fs.String("concurrency", "1,2,4,8,16,32,64", "concurrency steps")
	rate := fs.Int("rate", 200, "POSTs per second for the fixed-rate step")
	fs.Parse(args)
	if *bin == "" || *events == "" {
		return errors.New("-sgload and -events are required")
	}
	batches, err := loadBatches(*events, *batchBytes)
	if err != nil {
		return err
	}
	var totalBytes, totalEvents int
	for _, b := range batches {
		totalBytes += len(b.body)
		totalEvents += b.events
	}
	avgBody := totalBytes / len(batches)
	avgEvents := float64(totalEvents) / float64(len(batches))
	if *dir == "" {
		d, err := os.MkdirTemp("", "sgload-bench-ingest")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	fmt.Printf("batches: %d of ~%d KiB (%.0f events each)\n\n", len(batches), avgBody/1024, avgEvents)

	// Baseline: the disk itself, appending the same bytes with fdatasync
	// after each batch, no HTTP, no parsing.
	ceil, err := diskCeiling(filepath.Join(*dir, "ceiling"), batches, *step)
	if err != nil {
		return err
	}
	fmt.Printf("%-26s %10s %9s %9s %9s %9s\n", "run", "events/s", "MB/s", "p50 ms", "p99 ms", "vs disk")
	printRow("disk append+fdatasync", ceil, ceil)

	token := "benchtoken-0123456789abcdefghijklmnop"
	spoolDir := filepath.Join(*dir, "spool")
	cmd := exec.CommandContext(ctx, *bin, "--log-format", "json", "--log-level", "warn", "serve",
		"--spool", spoolDir, "--addr", "127.0.0.1:18089", "--url-token", token,
		"--min-free-bytes", "256MiB", "--max-body-bytes", "4MiB", "--debug-addr", "127.0.0.1:16060")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	url := "http://127.0.0.1:18089/webhook/sendgrid/" + token
	if err := waitReady("http://127.0.0.1:18089/readyz"); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}

	var steps []int
	for _, s := range strings.Split(*conc, ",") {
		var n int
		fmt.Sscan(s, &n)
		steps = append(steps, n)
	}
	best := result{}
	for _, c := range steps {
		r, err := closedLoop(ctx, client, url, batches, c, *step)
		if err != nil {
			return err
		}
		printRow(fmt.Sprintf("serve, %d concurrent", c), r, ceil)
		if r.bytesPerSec > best.bytesPerSec {
			best = r
		}
		removeSealed(filepath.Join(spoolDir, "events")) // keep the disk from filling
	}
	r, err := openLoop(ctx, client, url, batches, *rate, 2**step)
	if err != nil {
		return err
	}
	printRow(fmt.Sprintf("serve, %d POSTs/s fixed", *rate), r, ceil)
	fmt.Printf("\nbest: %.0f%% of the disk's append+fsync rate; at %d POSTs/s: p99 %.1f ms (achieved %.0f POSTs/s, %d errors)\n",
		100*best.bytesPerSec/ceil.bytesPerSec, *rate, r.p99.Seconds()*1000, r.postsPerSec, r.errors)
	return nil
}

type result struct {
	bytesPerSec, eventsPerSec, postsPerSec float64
	p50, p99                               time.Duration
	errors                                 int
}

func printRow(name string, r, ceil result) {
	fmt.Printf("%-26s %10.0f %9.1f %9.2f %9.2f %8.0f%%\n", name, r.eventsPerSec, r.bytesPerSec/1e6,
		r.p50.Seconds()*1000, r.p99.Seconds()*1000, 100*r.bytesPerSec/ceil.bytesPerSec)
}

func summarize(lat []time.Duration, bytes, events, posts int, elapsed time.Duration, errs int) result {
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	s := elapsed.Seconds()
	return result{bytesPerSec: float64(bytes) / s, eventsPerSec: float64(events) / s, postsPerSec: float64(posts) / s,
		p50: pct(0.50), p99: pct(0.99), errors: errs}
}

func diskCeiling(path string, batches []batch, d time.Duration) (result, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return result{}, err
	}
	defer os.Remove(path)
	defer f.Close()
	var lat []time.Duration
	var bytes, fileBytes, events, n int
	start := time.Now()
	for time.Since(start) < d {
		b := batches[n%len(batches)]
		t0 := time.Now()
		if _, err := f.Write(b.body); err != nil {
			return result{}, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return result{}, err
		}
		lat = append(lat, time.Since(t0))
		bytes, events, n = bytes+len(b.body), events+b.events, n+1
		if fileBytes += len(b.body); fileBytes > 2<<30 { // keep the file bounded
			if err := f.Truncate(0); err != nil {
				return result{}, err
			}
			fileBytes = 0
		}
	}
	return summarize(lat, bytes, events, n, time.Since(start), 0), nil
}

func post(client *http.Client, url string, b batch) error {
	resp, err := client.Post(url, "application/json", bytes.NewReader(b.body))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func closedLoop(ctx context.Context, client *http.Client, url string, batches []batch, conc int, d time.Duration) (result, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var bytes, events, posts, errs int
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d && ctx.Err() == nil {
				b := batches[int(next.Add(1))%len(batches)]
				t0 := time.Now()
				err := post(client, url, b)
				el := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, el)
					bytes, events, posts = bytes+len(b.body), events+b.events, posts+1
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return summarize(lat, bytes, events, posts, time.Since(start), errs), ctx.Err()
}

// openLoop sends at a fixed rate whatever the latency, as SendGrid's many
// servers do, so a slow server shows up as latency, not as a lower rate.
func openLoop(ctx context.Context, client *http.Client, url string, batches []batch, rate int, d time.Duration) (result, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var bytes, events, posts, errs int
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		b := batches[i%len(batches)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			err := post(client, url, b)
			el := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			lat = append(lat, el)
			bytes, events, posts = bytes+len(b.body), events+b.events, posts+1
		}()
	}
	wg.Wait()
	return summarize(lat, bytes, events, posts, time.Since(start), errs), ctx.Err()
}

// loadBatches groups NDJSON events into bodies framed as SendGrid frames
// them: "[" + events joined by ",\r\n" + "\r\n]\r\n"... up to size bytes.
func loadBatches(path string, size int) ([]batch, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []batch
	var cur bytes.Buffer
	n := 0
	flush := func() {
		if n > 0 {
			cur.WriteString("\r\n]\r\n")
			out = append(out, batch{body: bytes.Clone(cur.Bytes()), events: n})
		}
		cur.Reset()
		n = 0
	}
	for sc.Scan() {
		line := sc.Bytes()
		if !json.Valid(line) {
			return nil, fmt.Errorf("%s: a line is not JSON", path)
		}
		if n > 0 && cur.Len()+len(line)+8 > size {
			flush()
		}
		if n == 0 {
			cur.WriteString("[")
		} else {
			cur.WriteString(",\r\n")
		}
		cur.Write(line)
		n++
	}
	flush()
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no events", path)
	}
	return out, sc.Err()
}

func waitReady(url string) error {
	for range 100 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready", url)
}

func removeSealed(dir string) {
	m, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	for _, p := range m {
		os.Remove(p)
	}
}

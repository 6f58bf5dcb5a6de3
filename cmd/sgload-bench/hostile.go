package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sgload/sgload/internal/hostile"
)

// benchHostile measures serve (signature-only, default limits) taking
// signed POSTs at a fixed rate alone (the baseline), then the same under
// attack: slow senders and forged large bodies in flight. It prints the
// signed POSTs' answers and latencies, serve's peak memory and what
// /readyz said.
func benchHostile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hostile", flag.ExitOnError)
	bin := fs.String("sgload", "", "sgload binary to benchmark")
	events := fs.String("events", "testdata/events/sample-2000.ndjson", "NDJSON events for the signed POSTs")
	dir := fs.String("dir", "", "scratch folder (default: a temp folder)")
	d := fs.Duration("duration", 20*time.Second, "how long each run posts")
	rate := fs.Int("rate", 50, "signed POSTs a second")
	bodyBytes := fs.Int("body-bytes", postBytes, "size of the signed POSTs' bodies")
	slow := fs.Int("slow", 500, "senders trickling a byte every 5s")
	forged := fs.Int("forged", 200, "senders of large bodies with a bad signature")
	forgedBytes := fs.Int("forged-bytes", 8_000_000, "size of the forged bodies")
	forgedRate := fs.Int("forged-rate", 256<<10, "bytes a second each forged body is sent at")
	fs.Parse(args)
	if *bin == "" {
		return errors.New("-sgload is required")
	}
	data, err := os.ReadFile(*events)
	if err != nil {
		return err
	}
	var lines [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		lines = append(lines, []byte(l))
	}
	// Repeat the events so that there are bodies of the size asked for.
	for len(lines) > 0 && len(hostile.Bodies(lines, *bodyBytes)) < 8 {
		lines = append(lines, lines...)
	}
	bodies := hostile.Bodies(lines, *bodyBytes)
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "sgload-bench-hostile")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}
	signer, err := hostile.NewSigner()
	if err != nil {
		return err
	}
	spoolDir := filepath.Join(*dir, "spool")
	_ = os.RemoveAll(spoolDir)
	const addr = "127.0.0.1:18090"
	cmd := exec.CommandContext(ctx, *bin, "--log-format", "json", "--log-level", "error", "serve",
		"--spool", spoolDir, "--addr", addr, "--min-free-bytes", "256MiB")
	cmd.Env = append(os.Environ(), "SGLOAD_SIGNING_KEYS="+signer.PublicKey)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	if err := waitReady("http://" + addr + "/readyz"); err != nil {
		return err
	}
	url := "http://" + addr + "/webhook/sendgrid"
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	fmt.Printf("signed POSTs: %d a second, bodies of ~%d KiB; attack: %d slow senders (a byte every 5s), %d forged bodies of %d MB at %d KiB/s each\n\n",
		*rate, len(bodies[0])>>10, *slow, *forged, *forgedBytes/1_000_000, *forgedRate>>10)
	fmt.Printf("%-28s %6s %6s %6s %6s %9s %9s %10s\n", "run", "sent", "200", "503", "other", "p50 ms", "p99 ms", "peak RSS")

	run := func(name string, attack *hostile.Attack) (string, error) {
		watch := newWatcher(cmd.Process.Pid, "http://"+addr+"/readyz")
		wctx, stop := context.WithCancel(ctx)
		go watch.run(wctx)
		var attackDone chan struct{}
		actx, stopAttack := context.WithCancel(ctx)
		if attack != nil {
			attackDone = make(chan struct{})
			go func() { defer close(attackDone); attack.Run(actx) }()
			// Let the attackers connect and get going.
			want := int64(attack.Slow + attack.Forged)
			for i := 0; i < 100 && attack.Connected.Load() < want*9/10; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(2 * time.Second)
		}
		res := hostile.Valid(ctx, client, url, signer, bodies, *rate, *d)
		stop()
		stopAttack()
		if attackDone != nil {
			<-attackDone
		}
		other := res.Sent - res.Statuses[200] - res.Statuses[503]
		fmt.Printf("%-28s %6d %6d %6d %6d %9.1f %9.1f %6d MiB\n", name, res.Sent, res.Statuses[200], res.Statuses[503], other,
			ms(res.Percentile(0.50)), ms(res.Percentile(0.99)), watch.peak()>>20)
		return watch.readyz(), ctx.Err()
	}
	if _, err := run("signed POSTs alone", nil); err != nil {
		return err
	}
	attack := &hostile.Attack{Addr: addr, Path: "/webhook/sendgrid", Signer: signer,
		Slow: *slow, SlowLength: 700 << 10, SlowEvery: 5 * time.Second,
		Forged: *forged, ForgedBytes: *forgedBytes, ForgedRate: *forgedRate}
	ready, err := run("under attack", attack)
	if err != nil {
		return err
	}
	fmt.Printf("\nattackers' answers: %v\n/readyz under attack (its most pressed sample):\n%s\n", attack.Statuses(), indent(ready))
	if refused := metricLines("http://"+addr+"/metrics", "sgload_webhook_refused_total"); refused != "" {
		fmt.Printf("refusals by reason (both runs):\n%s\n", indent(refused))
	}
	return nil
}

// metricLines returns serve's metric lines that start with name ("" when
// the build has none).
func metricLines(url, name string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ")
}

// watcher samples serve's memory and /readyz while a run lasts.
type watcher struct {
	pid int
	url string

	mu      sync.Mutex
	maxRSS  int64
	ready   string
	readyAt int // rank of the kept sample: the most pressed one wins
}

func newWatcher(pid int, url string) *watcher { return &watcher{pid: pid, url: url} }

func (w *watcher) run(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rss, _, err := hostile.Memory(w.pid)
		w.mu.Lock()
		if err == nil {
			w.maxRSS = max(w.maxRSS, rss)
		}
		w.mu.Unlock()
		if i%5 != 0 {
			continue
		}
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(w.url)
		body := "no answer within 2s"
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b)
		}
		rank := 0
		for r, word := range []string{"pressure: none", "pressure: elevated", "pressure: high"} {
			if strings.Contains(body, word) {
				rank = r + 1
			}
		}
		w.mu.Lock()
		if w.ready == "" || rank > w.readyAt {
			w.ready, w.readyAt = body, rank
		}
		w.mu.Unlock()
	}
}

func (w *watcher) peak() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxRSS
}

func (w *watcher) readyz() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sgload/sgload/internal/hostile"
	"github.com/sgload/sgload/spool/spooltest"
)

// TestServeUnderHostileTraffic is serve, the real binary with its default
// limits and the signature as its only check (the setup the README
// recommends), under the attack that once took it down: 500 senders that
// trickle a byte every 5 s and 200 bodies of 8 MB with a signature that does
// not verify, all in flight, while SendGrid posts signed batches at 50 a
// second. Every signed POST must get 200, serve's memory (its peak RSS, from
// /proc) must stay under 512 MiB, and /readyz must report the pressure. It
// asserts outcomes only; make bench-hostile measures the latencies.
func TestServeUnderHostileTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	signer, err := hostile.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	p := startSgload(t, []string{"SGLOAD_SIGNING_KEYS=" + signer.PublicKey},
		"serve", "--spool", t.TempDir(), "--addr", "127.0.0.1:0", "--min-free-bytes", "0")
	addr := p.waitLog(t, "serving")["addr"].(string)
	base := "http://" + addr

	ctx, cancel := context.WithCancel(context.Background())
	attack := &hostile.Attack{Addr: addr, Path: "/webhook/sendgrid", Signer: signer,
		Slow: 500, SlowLength: 700 << 10, SlowEvery: 5 * time.Second,
		Forged: 200, ForgedBytes: 8_000_000, ForgedRate: 256 << 10}
	attackDone := make(chan struct{})
	go func() { defer close(attackDone); attack.Run(ctx) }()
	defer func() { cancel(); <-attackDone }()

	// The attack is in flight once serve counts its senders as waiting for
	// their check.
	waiting := regexp.MustCompile(`(\d+) not yet authenticated`)
	readyz := func() (int, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	unauth := func(body string) int {
		m := waiting.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("readyz does not say how many senders wait for their check:\n%s", body)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	for i := 0; ; i++ {
		if _, body := readyz(); unauth(body) >= 650 {
			break
		}
		if i > 600 {
			t.Fatalf("attack not in flight after 60s: %d connections", attack.Connected.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// While SendGrid posts, watch readyz.
	var mu sync.Mutex
	var samples []string
	watchDone := make(chan struct{})
	watchCtx, stopWatch := context.WithCancel(ctx)
	go func() {
		defer close(watchDone)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
			}
			st, body := readyz()
			mu.Lock()
			samples = append(samples, fmt.Sprintf("%d %s", st, body))
			mu.Unlock()
		}
	}()
	lines := spooltest.Lines(t, "../../testdata/events/sample-2000.ndjson")
	bodies := hostile.Bodies(lines, 64<<10)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	res := hostile.Valid(ctx, client, base+"/webhook/sendgrid", signer, bodies, 50, 6*time.Second)
	stopWatch()
	<-watchDone

	if res.Statuses[200] != res.Sent || res.Errors > 0 {
		t.Errorf("signed POSTs under attack: %d sent, answers %v, %d without an answer; want every one 200", res.Sent, res.Statuses, res.Errors)
	}
	_, peak, err := hostile.Memory(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if peak >= 512<<20 {
		t.Errorf("serve's peak RSS %d MiB, want under 512 MiB", peak>>20)
	}
	reported := false
	for _, s := range samples {
		if strings.HasPrefix(s, "200 ready") && unauth(s) >= 600 &&
			(strings.Contains(s, "pressure: elevated") || strings.Contains(s, "pressure: high")) {
			reported = true
		}
	}
	if !reported {
		t.Errorf("readyz did not report the pressure while under attack; samples:\n%s", strings.Join(samples, "\n"))
	}
	t.Logf("signed POSTs: %d sent, %v; attackers' answers so far: %v; serve's peak RSS %d MiB",
		res.Sent, res.Statuses, attack.Statuses(), peak>>20)
}

// Package hostile sends serve the traffic an attacker would, beside real
// SendGrid POSTs, for the hostile-traffic test (cmd/sgload) and make
// bench-hostile (cmd/sgload-bench): senders that trickle a byte now and
// then, large bodies with a signature that does not verify, and signed
// POSTs at a fixed rate. It also reads a process's memory from /proc.
package hostile

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sgload/sgload/internal/backoff"
)

// Signer signs bodies as SendGrid's Signed Event Webhook does.
type Signer struct {
	key *ecdsa.PrivateKey
	// PublicKey is the verification key, as serve's --signing-key takes it.
	PublicKey string
}

// NewSigner makes a fresh P-256 key pair.
func NewSigner() (*Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Signer{key: k, PublicKey: base64.StdEncoding.EncodeToString(der)}, nil
}

// Header returns the signature headers of body at time at.
func (s *Signer) Header(body []byte, at time.Time) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	h := sha256.New()
	h.Write([]byte(ts))
	h.Write(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, h.Sum(nil))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	hdr := http.Header{}
	hdr.Set("X-Twilio-Email-Event-Webhook-Signature", base64.StdEncoding.EncodeToString(sig))
	hdr.Set("X-Twilio-Email-Event-Webhook-Timestamp", ts)
	return hdr
}

// Attack is the hostile part of the traffic. Each sender reconnects when
// the server cuts it off, so the numbers stay in flight until ctx ends.
type Attack struct {
	Addr, Path string
	// Slow senders claim SlowLength bytes and send one every SlowEvery.
	Slow       int
	SlowLength int
	SlowEvery  time.Duration
	// Forged senders send ForgedBytes at ForgedRate bytes a second each,
	// signed with a signature that does not verify.
	Forged      int
	ForgedBytes int
	ForgedRate  int
	// Signer signs something else, which makes the signatures well-formed
	// but wrong (they pass serve's header checks).
	Signer *Signer

	// Counts, as the attack runs.
	Connected atomic.Int64 // connections open now
	mu        sync.Mutex
	statuses  map[int]int
}

// Run sends until ctx ends.
func (a *Attack) Run(ctx context.Context) {
	a.statuses = map[int]int{}
	var wg sync.WaitGroup
	for range a.Slow {
		wg.Add(1)
		go func() { defer wg.Done(); a.loop(ctx, a.SlowLength, 1, a.SlowEvery) }()
	}
	chunk := 16 << 10
	for range a.Forged {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.loop(ctx, a.ForgedBytes, chunk, time.Duration(float64(chunk)/float64(a.ForgedRate)*float64(time.Second)))
		}()
	}
	wg.Wait()
}

// Statuses are the answers the attackers got, by status.
func (a *Attack) Statuses() map[int]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[int]int{}
	for k, v := range a.statuses {
		out[k] = v
	}
	return out
}

// loop sends POSTs of length bytes, chunk bytes every every, one after
// the other, until ctx ends.
func (a *Attack) loop(ctx context.Context, length, chunk int, every time.Duration) {
	filler := bytes.Repeat([]byte(" "), chunk)
	for ctx.Err() == nil {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a.Addr)
		if err != nil {
			if backoff.Sleep(ctx, 100*time.Millisecond) != nil {
				return
			}
			continue
		}
		a.Connected.Add(1)
		status := a.send(ctx, c, length, filler, every)
		a.Connected.Add(-1)
		_ = c.Close()
		if status > 0 {
			a.mu.Lock()
			a.statuses[status]++
			a.mu.Unlock()
		}
	}
}

func (a *Attack) send(ctx context.Context, c net.Conn, length int, filler []byte, every time.Duration) int {
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	var head strings.Builder
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: sgload\r\nContent-Type: application/json\r\nUser-Agent: hostile\r\nContent-Length: %d\r\n", a.Path, length)
	for k, vs := range a.Signer.Header([]byte("not this body"), time.Now()) {
		fmt.Fprintf(&head, "%s: %s\r\n", k, vs[0])
	}
	head.WriteString("\r\n[")
	if _, err := io.WriteString(c, head.String()); err != nil {
		return 0
	}
	// The answer may come before the body is done (408, 503): read it
	// beside the writes.
	answer := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answer <- 0
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for sent := 1; sent < length; {
		select {
		case st := <-answer:
			return st
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
		n := min(len(filler), length-sent)
		if _, err := c.Write(filler[:n]); err != nil {
			return <-answer
		}
		sent += n
	}
	return <-answer
}

// Result is what the signed POSTs got.
type Result struct {
	Sent      int
	Statuses  map[int]int
	Latencies []time.Duration // of the 200s, sorted
	Errors    int             // no answer at all
}

// Percentile is the latency below which p of the 200s fell.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[min(len(r.Latencies)-1, int(p*float64(len(r.Latencies))))]
}

// Valid POSTs signed bodies at rate a second for d, each in its own
// request, whatever the answers take (an open loop, as SendGrid's many
// servers send), and waits for the answers.
func Valid(ctx context.Context, client *http.Client, url string, s *Signer, bodies [][]byte, rate int, d time.Duration) *Result {
	res := &Result{Statuses: map[int]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		if backoff.Sleep(ctx, time.Until(at)) != nil {
			break
		}
		body := bodies[i%len(bodies)]
		hdr := s.Header(body, time.Now())
		res.Sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			req.Header = hdr
			req.Header.Set("Content-Type", "application/json")
			t0 := time.Now()
			resp, err := client.Do(req)
			el := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors++
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			res.Statuses[resp.StatusCode]++
			if resp.StatusCode == http.StatusOK {
				res.Latencies = append(res.Latencies, el)
			}
		}()
	}
	wg.Wait()
	slices.Sort(res.Latencies)
	return res
}

// Memory reads a process's resident set size now and at its peak (VmRSS
// and VmHWM in /proc/<pid>/status), in bytes.
func Memory(pid int) (rss, peak int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n << 10
		case "VmHWM:":
			peak = n << 10
		}
	}
	return rss, peak, nil
}

// Bodies frames events (one JSON object each) into POST bodies of about
// size bytes, as SendGrid frames them.
func Bodies(events [][]byte, size int) [][]byte {
	var out [][]byte
	var cur bytes.Buffer
	for _, e := range events {
		if cur.Len() > 0 && cur.Len()+len(e)+8 > size {
			cur.WriteString("\r\n]\r\n")
			out = append(out, bytes.Clone(cur.Bytes()))
			cur.Reset()
		}
		if cur.Len() == 0 {
			cur.WriteString("[")
		} else {
			cur.WriteString(",\r\n")
		}
		cur.Write(e)
	}
	if cur.Len() > 0 {
		cur.WriteString("\r\n]\r\n")
		out = append(out, cur.Bytes())
	}
	return out
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/webhook"
)

// TestServeCrashLosesNothing is the spool's promise under fire: the real
// binary takes concurrent POSTs and is killed with SIGKILL at random moments,
// several times. After each restart it must recover on its own, and in the
// end every event of every POST that got a 200 is in the spool exactly once.
func TestServeCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	root := t.TempDir()
	token := webhook.NewURLToken()
	env := []string{"SGLOAD_URL_TOKENS=" + token}
	args := []string{"serve", "--spool", root, "--addr", "127.0.0.1:0", "--node", "crash",
		"--min-free-bytes", "0", "--segment-bytes", "256KiB"}
	rng := rand.New(rand.NewPCG(1, 2))

	var mu sync.Mutex
	acked := map[string]int{} // event id -> events acknowledged (1)
	sent := 0
	const rounds = 6
	recoveries := 0
	for round := range rounds {
		p := startSgload(t, env, args...)
		line := p.waitLog(t, "serving")
		recoveries += p.countLogs("recovered segment")
		url := fmt.Sprintf("http://%s/webhook/sendgrid/%s", line["addr"], token)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 10 * time.Second}
				for b := 0; ; b++ {
					select {
					case <-stop:
						return
					default:
					}
					n := 1 + (b*7+g)%40
					ids := make([]string, n)
					var body bytes.Buffer
					body.WriteString("[")
					for e := range n {
						ids[e] = fmt.Sprintf("r%d-g%d-b%d-e%d", round, g, b, e)
						if e > 0 {
							body.WriteString(",\r\n")
						}
						fmt.Fprintf(&body, `{"event":"delivered","sg_event_id":%q,"pad":%q}`, ids[e], strings.Repeat("x", (b*131+e*17)%2000))
					}
					body.WriteString("\r\n]\r\n")
					mu.Lock()
					sent += n
					mu.Unlock()
					resp, err := client.Post(url, "application/json", &body)
					if err != nil {
						return // killed
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						for _, id := range ids {
							acked[id]++
						}
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(150+rng.IntN(500)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.wait()
		close(stop)
		wg.Wait()
	}
	// A last start recovers the last crash; SIGTERM then stops it cleanly.
	p := startSgload(t, env, args...)
	p.waitLog(t, "serving")
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLog(t, "stopped; spool sealed")
	p.wait()
	recoveries += p.countLogs("recovered segment")
	if recoveries == 0 {
		t.Error("no restart had to recover an open segment: the kills did not land mid-write")
	}

	events := filepath.Join(root, spool.EventsDir)
	if opens, _ := spool.ListSegments(events, spool.OpenSuffix); len(opens) != 0 {
		t.Fatalf("%d segments still open after a clean stop", len(opens))
	}
	segs, err := spool.ListSegments(events, spool.SealedSuffix)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	var lastSeq int64
	for _, sg := range segs {
		r, err := spool.OpenReader(sg.Path)
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v (recovery should leave only intact records)", sg.Name(), err)
			}
			if rec.Sequence <= lastSeq {
				t.Fatalf("sequence %d not above %d", rec.Sequence, lastSeq)
			}
			lastSeq = rec.LastSequence()
			var evs []struct {
				ID string `json:"sg_event_id"`
			}
			if err := json.Unmarshal(rec.Body, &evs); err != nil {
				t.Fatal(err)
			}
			if len(evs) != rec.Events {
				t.Fatalf("record says %d events, body has %d", rec.Events, len(evs))
			}
			for _, e := range evs {
				stored[e.ID]++
			}
		}
		r.Close()
	}
	missing, dup := 0, 0
	for id := range acked {
		if stored[id] != 1 {
			missing++
		}
	}
	for _, n := range stored {
		if n > 1 {
			dup++
		}
	}
	t.Logf("%d rounds, %d recoveries: %d events sent, %d acknowledged, %d stored", rounds, recoveries, sent, len(acked), len(stored))
	if len(acked) < 1000 {
		t.Fatalf("only %d events acknowledged; the load did not run", len(acked))
	}
	if missing > 0 || dup > 0 {
		t.Fatalf("%d acknowledged events missing, %d stored twice", missing, dup)
	}
}

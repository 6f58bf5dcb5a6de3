package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sgload/sgload/internal/segmentcom"
)

// TestForwardKilledResumes kills the real forward with SIGKILL in the middle
// of its run three times; after a last run the receiver holds exactly the
// calls of an undisturbed run, and every call sent twice is identical.
func TestForwardKilledResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	const key = "wk-cli-0123456789"
	env := []string{"SGLOAD_SEGMENT_WRITE_KEY=" + key}
	args := func(spool, url string) []string {
		return []string{"forward", "--spool", spool, "--endpoint", url, "--anonymous", "--rate", "200", "--batch-size", "20"}
	}
	// The reference: an undisturbed run over an identical spool.
	ref := segmentcom.New(t, key)
	refSpool := t.TempDir()
	sampleSpool(t, refSpool)
	if out, stderr, code := runSgload(t, env, args(refSpool, ref.URL)...); code != 0 {
		t.Fatalf("reference run: exit %d\n%s%s", code, out, stderr)
	}
	want := map[string]bool{}
	for _, c := range ref.Calls() {
		want[c.MessageID] = true
	}
	if len(want) < 500 {
		t.Fatalf("reference run sent only %d calls", len(want))
	}

	rcv := segmentcom.New(t, key)
	root := t.TempDir()
	sampleSpool(t, root)
	var mu sync.Mutex
	var current *exec.Cmd
	killAt := 0
	rcv.OnRequest(func(n int) {
		mu.Lock()
		defer mu.Unlock()
		if n == killAt && current != nil {
			current.Process.Kill()
		}
	})
	for _, at := range []int{2, 5, 9} {
		p := startSgload(t, env, args(root, rcv.URL)...)
		mu.Lock()
		current, killAt = p.cmd, at
		mu.Unlock()
		p.wait()
		if p.cmd.ProcessState.ExitCode() != -1 {
			t.Fatalf("forward was not killed (exit %d)", p.cmd.ProcessState.ExitCode())
		}
	}
	if out, stderr, code := runSgload(t, env, args(root, rcv.URL)...); code != 0 || !strings.Contains(out, "forwarded") {
		t.Fatalf("last run: exit %d\n%s%s", code, out, stderr)
	}
	got := map[string]string{}
	for _, c := range rcv.Calls() {
		if prev, ok := got[c.MessageID]; ok && prev != c.Raw {
			t.Fatalf("messageId %s resent with another payload", c.MessageID)
		}
		got[c.MessageID] = c.Raw
	}
	for id := range want {
		if _, ok := got[id]; !ok {
			t.Fatalf("call %s lost across the kills (%d of %d arrived)", id, len(got), len(want))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d distinct calls, want %d", len(got), len(want))
	}
}

// TestServeTee checks the --tee flag end to end: a POST to the real serve
// reaches the downstream byte for byte.
func TestServeTee(t *testing.T) {
	var mu sync.Mutex
	var got []string
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	defer down.Close()
	p := startSgload(t, nil, "serve", "--spool", t.TempDir(), "--addr", "127.0.0.1:0", "--insecure-no-auth", "--min-free-bytes", "0", "--tee", down.URL+"/hook")
	line := p.waitLog(t, "serving")
	body := "[{\"event\":\"open\",\"sg_event_id\":\"tee-1\"}\r\n]\r\n"
	resp, err := http.Post("http://"+line["addr"].(string)+"/webhook/sendgrid", "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("post: %v %v", resp, err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the tee delivered nothing")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got[0] != body {
		t.Fatalf("downstream got %q, want %q", got[0], body)
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sgloadBin is the real binary, built once for the tests that run it as a
// separate process (crash tests kill it with SIGKILL), with the test hooks
// (the sgload_testhooks build tag: SGLOAD_CRASH_AT); releaseBin, built on
// demand, is the binary as released, without them.
var (
	sgloadBin  string
	binDir     string
	releaseBin = sync.OnceValues(func() (string, error) {
		p := filepath.Join(binDir, "sgload-release")
		build := exec.Command("go", "build", "-o", p, ".")
		out, err := build.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("build release sgload: %v\n%s", err, out)
		}
		return p, nil
	})
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sgload-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, sgloadBin = dir, filepath.Join(dir, "sgload")
	// Without -race: the crash tests run the binary dozens of times, and the
	// race detector covers the same code in the packages' in-process tests.
	build := exec.Command("go", "build", "-tags", "sgload_testhooks", "-o", sgloadBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sgload:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running sgload process.
type proc struct {
	cmd  *exec.Cmd
	logs chan map[string]any
	done chan struct{}

	mu  sync.Mutex
	all []map[string]any
	raw strings.Builder
}

// wait reads stderr to its end, then reaps the process: Wait closes the
// pipe, so calling it first can lose the last lines (the error and hint).
func (p *proc) wait() error {
	<-p.done
	return p.cmd.Wait()
}

// rawLogs is everything the process wrote to stderr so far.
func (p *proc) rawLogs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// startSgload runs the binary with JSON logs and hands every log line to the
// test through p.logs.
func startSgload(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(sgloadBin, append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: make(chan map[string]any, 1024), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": sc.Text()}
			}
			p.mu.Lock()
			p.all = append(p.all, m)
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			p.mu.Unlock()
			select {
			case p.logs <- m:
			default:
			}
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return p
}

// waitLog returns the first log line whose msg contains substr.
func (p *proc) waitLog(t *testing.T, substr string) map[string]any {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case m := <-p.logs:
			if msg, _ := m["msg"].(string); strings.Contains(msg, substr) {
				return m
			}
		case <-p.done:
			t.Fatalf("sgload exited before logging %q", substr)
		case <-timeout:
			t.Fatalf("no log line %q after 60s", substr)
		}
	}
}

// countLogs counts the log lines so far whose msg contains substr.
func (p *proc) countLogs(substr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.all {
		if msg, _ := m["msg"].(string); strings.Contains(msg, substr) {
			n++
		}
	}
	return n
}

func runSgload(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(sgloadBin, args...)
	cmd.Env = append(os.Environ(), env...)
	return runCmd(t, cmd)
}

// runCmd runs cmd to its end and returns what it printed and its exit code.
func runCmd(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// sampleSpool fills a spool with the 2,000 realistic sample events as
// SendGrid-framed POSTs and returns how many distinct events it holds.
func sampleSpool(t *testing.T, root string) int64 {
	t.Helper()
	lines := spooltest.Lines(t, "../../testdata/events/sample-2000.ndjson")
	spooltest.Fill(t, root, lines, spooltest.Options{Node: "cli", PerPost: 40, SegmentBytes: 128 << 10})
	distinct := map[string]bool{}
	for _, l := range lines {
		distinct[string(l)] = true // the sample's duplicates are exact re-sends
	}
	return int64(len(distinct))
}

// rowsIn counts, with DuckDB, the rows and distinct event ids in b.
func rowsIn(t *testing.T, b *testbucket.Bucket) (rows, ids int64) {
	t.Helper()
	dir := b.Mirror(t, "")
	db := duckcheck.Open(t)
	src := fmt.Sprintf("read_parquet('%s/events/*/*/*.parquet', hive_partitioning = true)", dir)
	return duckcheck.Int(t, db, "SELECT count(*) FROM "+src), duckcheck.Int(t, db, "SELECT count(DISTINCT sg_event_id) FROM "+src)
}

// TestFlushKilledAtEveryStep kills the real binary with SIGKILL at each
// step of the commit protocol, reruns it, and checks that the bucket holds
// every event exactly once and that sgload verify agrees.
func TestFlushKilledAtEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	for _, kind := range []string{"file", "s3"} {
		for _, point := range loader.Steps {
			t.Run(kind+"/"+string(point), func(t *testing.T) {
				b := testbucket.Open(t, kind)
				root := t.TempDir()
				want := sampleSpool(t, root)
				args := []string{"flush", "--spool", root, "--bucket", b.URL(), "--max-plan-bytes", "200KiB", "--target-file-bytes", "32KiB"}
				_, stderr, code := runSgload(t, []string{"SGLOAD_CRASH_AT=" + string(point)}, args...)
				if code != -1 {
					t.Fatalf("flush with SGLOAD_CRASH_AT=%s exited %d, want killed; stderr:\n%s", point, code, stderr)
				}
				out, stderr, code := runSgload(t, nil, args...)
				if code != 0 {
					t.Fatalf("rerun exited %d:\n%s", code, stderr)
				}
				if !strings.Contains(out, "flushed") && !strings.Contains(out, "nothing to flush") {
					t.Errorf("rerun printed %q", out)
				}
				if rows, ids := rowsIn(t, b); rows != want || ids != want {
					t.Fatalf("bucket holds %d rows, %d distinct ids; want %d of each", rows, ids, want)
				}
				if out, _, code := runSgload(t, nil, "verify", "--spool", root, "--bucket", b.URL()); code != 0 {
					t.Fatalf("verify exited %d:\n%s", code, out)
				}
			})
		}
	}
}

// s3Server is a VersityGW process of the test's own, so that the test may
// stop, freeze and restart it.
type s3Server struct {
	t               *testing.T
	addr            string
	dataDir, iamDir string
	cmd             *exec.Cmd
}

func startS3Server(t *testing.T, bucketName string) *s3Server {
	t.Helper()
	if !testbucket.Available(t, "s3") || os.Getenv("SGLOAD_TEST_VERSITYGW") == "" {
		t.Skip("no S3 server binary (run make test)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &s3Server{t: t, addr: l.Addr().String(), dataDir: t.TempDir(), iamDir: t.TempDir()}
	l.Close()
	s.start()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGCONT) // a frozen server cannot die
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	if err := os.Mkdir(filepath.Join(s.dataDir, bucketName), 0o755); err != nil { // posix backend: a bucket is a folder
		t.Fatal(err)
	}
	return s
}

func (s *s3Server) start() {
	s.t.Helper()
	cmd := exec.Command(os.Getenv("SGLOAD_TEST_VERSITYGW"), "--port", s.addr, "--iam-dir", s.iamDir, "posix", s.dataDir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+os.Getenv("AWS_ACCESS_KEY_ID"), "ROOT_SECRET_ACCESS_KEY="+os.Getenv("AWS_SECRET_ACCESS_KEY"))
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return
		}
		if i > 100 {
			s.t.Fatal("S3 server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *s3Server) url(bucketName string) string {
	return "s3://" + bucketName + "?endpoint=http://" + s.addr + "&region=us-east-1&use_path_style=true"
}

// waitForObject returns once the first Parquet object of a flush has landed.
func (s *s3Server) waitForObject(bucketName string) {
	s.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; {
		m, _ := filepath.Glob(filepath.Join(s.dataDir, bucketName, "events", "*", "*", "*.parquet"))
		if len(m) > 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatal("no object uploaded")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkExact checks that the bucket holds every event of the spool once
// and that verify agrees.
func checkExact(t *testing.T, url, root string, want int64) {
	t.Helper()
	b, err := bucket.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tb := &testbucket.Bucket{Bucket: b, Kind: "s3"}
	if rows, ids := rowsIn(t, tb); rows != want || ids != want {
		t.Fatalf("bucket holds %d rows, %d distinct ids; want %d of each", rows, ids, want)
	}
	if out, _, code := runSgload(t, nil, "verify", "--spool", root, "--bucket", url); code != 0 {
		t.Fatalf("verify exited %d:\n%s", code, out)
	}
}

// TestFlushSurvivesStorageOutage stops the S3 server while flush uploads:
// flush fails with exit 1; once the server is back, a rerun completes and
// the bucket holds every event exactly once.
func TestFlushSurvivesStorageOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	s3 := startS3Server(t, "outage")
	url := s3.url("outage")
	root := t.TempDir()
	want := sampleSpool(t, root)
	args := []string{"flush", "--spool", root, "--bucket", url, "--max-plan-bytes", "100KiB", "--target-file-bytes", "16KiB"}
	p := startSgload(t, nil, args...)
	s3.waitForObject("outage")
	s3.cmd.Process.Kill()
	s3.cmd.Wait()
	err := p.wait()
	if code := p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("flush with the server down exited %d (%v), want 1", code, err)
	}
	s3.start()
	if _, stderr, code := runSgload(t, nil, args...); code != 0 {
		t.Fatalf("rerun exited %d:\n%s", code, stderr)
	}
	checkExact(t, url, root, want)
}

// TestFlushExitsWhenStorageFreezes freezes the S3 server (SIGSTOP) in the
// middle of a flush: it takes connections and never answers, so only
// flush's deadlines can end the run. Flush must exit 1 with an error that
// says the store stopped answering, within a bound (far above what the
// deadlines add up to, so load cannot break it), having released its lock:
// a second flush against the frozen store also fails on the deadline, not
// on the lock (exit 4). After SIGCONT a rerun is exact.
func TestFlushExitsWhenStorageFreezes(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	s3 := startS3Server(t, "frozen")
	url := s3.url("frozen")
	root := t.TempDir()
	want := sampleSpool(t, root)
	args := []string{"flush", "--spool", root, "--bucket", url, "--max-plan-bytes", "100KiB", "--target-file-bytes", "16KiB",
		"--bucket-timeout", "3s"}
	p := startSgload(t, nil, args...)
	s3.waitForObject("frozen")
	if err := s3.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	const bound = 3 * time.Minute
	exited := make(chan error, 1)
	go func() { exited <- p.wait() }()
	select {
	case <-exited:
	case <-time.After(bound):
		t.Fatalf("flush against a frozen store still running after %s", bound)
	}
	logs := p.rawLogs()
	if code := p.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(logs, "error: ") ||
		!strings.Contains(logs, "no progress") || !strings.Contains(logs, "hint: the bucket stopped answering") {
		t.Fatalf("flush against a frozen store exited %d; stderr:\n%s", code, logs)
	}
	_, stderr, code := runSgload(t, nil, args...)
	if code != 1 || !strings.Contains(stderr, "no progress") {
		t.Fatalf("second flush against the frozen store exited %d (want 1, not 4: the lock must be free):\n%s", code, stderr)
	}
	if err := s3.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runSgload(t, nil, args...); code != 0 {
		t.Fatalf("rerun after SIGCONT exited %d:\n%s", code, stderr)
	}
	checkExact(t, url, root, want)
}

// TestReleaseBinaryIgnoresCrashHook: the crash tests' SGLOAD_CRASH_AT kills
// a flush at a protocol step, but only in binaries built with the test
// hooks; a release binary runs the flush to its end.
func TestReleaseBinaryIgnoresCrashHook(t *testing.T) {
	bin, err := releaseBin()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	want := sampleSpool(t, root)
	b := testbucket.Open(t, "file")
	cmd := exec.Command(bin, "flush", "--spool", root, "--bucket", b.Dir, "--json")
	cmd.Env = append(os.Environ(), "SGLOAD_CRASH_AT="+string(loader.StepPlanJournaled))
	out, err := cmd.Output()
	var sum loader.Summary
	if err != nil || json.Unmarshal(out, &sum) != nil || sum.Rows != want {
		t.Fatalf("release flush with SGLOAD_CRASH_AT set: %v, %d rows (want %d)\n%s", err, sum.Rows, want, out)
	}
}

func TestFlushExitCodes(t *testing.T) {
	root := t.TempDir()
	want := sampleSpool(t, root)
	b := testbucket.Open(t, "file")
	out, _, code := runSgload(t, nil, "flush", "--spool", root, "--bucket", b.Dir, "--json")
	var sum loader.Summary
	if code != 0 || json.Unmarshal([]byte(out), &sum) != nil || sum.Rows != want {
		t.Fatalf("flush --json: exit %d, %d rows, want %d\n%s", code, sum.Rows, want, out)
	}
	out, _, code = runSgload(t, nil, "flush", "--spool", root, "--bucket", b.Dir)
	if code != 0 || strings.TrimSpace(out) != "nothing to flush" {
		t.Fatalf("second flush: exit %d %q", code, out)
	}
	_, stderr, code := runSgload(t, nil, "flush", "--spool", root)
	if code != exitUsage || !strings.Contains(stderr, "--bucket is required") {
		t.Fatalf("no bucket: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runSgload(t, nil, "flush", "--spool", root, "--bucket", "s3://x?nonsense=1")
	if code != exitUsage || !strings.Contains(stderr, "hint:") {
		t.Fatalf("bad URL: exit %d\n%s", code, stderr)
	}
	lock, err := spool.Dir{Root: root}.Lock(spool.LockFlush)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runSgload(t, nil, "flush", "--spool", root, "--bucket", b.Dir)
	lock.Unlock()
	if code != exitBusy {
		t.Fatalf("locked spool: exit %d, want %d\n%s", code, exitBusy, stderr)
	}
	// A mismatch: delete one object behind flush's back.
	objs, _ := filepath.Glob(filepath.Join(b.Dir, "events", "*", "*", "*.parquet"))
	os.Remove(objs[0])
	out, _, code = runSgload(t, nil, "verify", "--spool", root, "--bucket", b.Dir)
	if code != exitMismatch || !strings.Contains(out, "missing from the bucket") {
		t.Fatalf("verify after a lost object: exit %d\n%s", code, out)
	}
}

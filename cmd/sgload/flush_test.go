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

// TestFlushSurvivesStorageOutage stops the S3 server while flush uploads:
// flush fails with exit 1; once the server is back, a rerun completes and
// the bucket holds every event exactly once.
func TestFlushSurvivesStorageOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	if !testbucket.Available(t, "s3") || os.Getenv("SGLOAD_TEST_VERSITYGW") == "" {
		t.Skip("no S3 server binary (run make test)")
	}
	dataDir, iamDir := t.TempDir(), t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	startS3 := func() *exec.Cmd {
		cmd := exec.Command(os.Getenv("SGLOAD_TEST_VERSITYGW"), "--port", addr, "--iam-dir", iamDir, "posix", dataDir)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+os.Getenv("AWS_ACCESS_KEY_ID"), "ROOT_SECRET_ACCESS_KEY="+os.Getenv("AWS_SECRET_ACCESS_KEY"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return cmd
			}
			if i > 100 {
				t.Fatal("S3 server did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	s3 := startS3()
	t.Cleanup(func() { s3.Process.Kill(); s3.Wait() })
	if err := os.Mkdir(filepath.Join(dataDir, "outage"), 0o755); err != nil { // posix backend: a bucket is a folder
		t.Fatal(err)
	}
	url := "s3://outage?endpoint=http://" + addr + "&region=us-east-1&use_path_style=true"
	root := t.TempDir()
	want := sampleSpool(t, root)
	args := []string{"flush", "--spool", root, "--bucket", url, "--max-plan-bytes", "100KiB", "--target-file-bytes", "16KiB"}
	p := startSgload(t, nil, args...)
	// Stop the server as soon as the first Parquet object has landed.
	for deadline := time.Now().Add(60 * time.Second); ; {
		m, _ := filepath.Glob(filepath.Join(dataDir, "outage", "events", "*", "*", "*.parquet"))
		if len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no object uploaded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s3.Process.Kill()
	s3.Wait()
	err = p.cmd.Wait()
	if code := p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("flush with the server down exited %d (%v), want 1", code, err)
	}
	s3 = startS3()
	if _, stderr, code := runSgload(t, nil, args...); code != 0 {
		t.Fatalf("rerun exited %d:\n%s", code, stderr)
	}
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

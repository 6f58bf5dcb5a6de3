package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/rewrite"
	"github.com/sgload/sgload/spool/spooltest"
)

// TestCompactKilledAtEveryStep kills the real binary with SIGKILL at each
// step of the rewrite protocol, reruns it, and checks that the bucket holds
// every event once and that sgload verify agrees.
func TestCompactKilledAtEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	for _, kind := range []string{"file", "s3"} {
		for _, step := range rewrite.Steps {
			t.Run(kind+"/"+string(step), func(t *testing.T) {
				b := testbucket.Open(t, kind)
				root := t.TempDir()
				want := sampleSpool(t, root)
				if _, stderr, code := runSgload(t, nil, "flush", "--spool", root, "--bucket", b.URL(), "--max-plan-bytes", "100KiB"); code != 0 {
					t.Fatalf("flush exited %d:\n%s", code, stderr)
				}
				// --lease-ttl 1ms: the killed process's leases have lapsed
				// by the time the rerun starts, as a dead holder's do.
				args := []string{"compact", "--bucket", b.URL(), "--min-age", "0s", "--grace", "0s", "--lease-ttl", "1ms",
					"--target-file-bytes", "64KiB", "--work-dir", t.TempDir()}
				if _, stderr, code := runSgload(t, []string{"SGLOAD_CRASH_AT=" + string(step)}, args...); code != -1 {
					t.Fatalf("compact with SGLOAD_CRASH_AT=%s exited %d, want killed; stderr:\n%s", step, code, stderr)
				}
				out, stderr, code := runSgload(t, nil, append(args, "--json")...)
				if code != 0 {
					t.Fatalf("rerun exited %d:\n%s", code, stderr)
				}
				var sum rewrite.Summary
				if err := json.Unmarshal([]byte(out), &sum); err != nil {
					t.Fatalf("summary %q: %v", out, err)
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

// TestForgetCommand erases an address through the command line, and finds
// no byte of it left under the spool or the bucket folder.
func TestForgetCommand(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	sampleSpool(t, root)
	if _, stderr, code := runSgload(t, nil, "flush", "--spool", root, "--bucket", b.URL()); code != 0 {
		t.Fatalf("flush exited %d:\n%s", code, stderr)
	}
	lines := spooltest.Lines(t, "../../testdata/events/sample-2000.ndjson")
	spooltest.Fill(t, root, lines[:100], spooltest.Options{Node: "cli", PerPost: 10}) // waiting for flush
	const addr = "ivan.nina4667@example-corp6.com"
	list := filepath.Join(t.TempDir(), "erase.txt")
	os.WriteFile(list, []byte("# requests of 2026-12-01\n"+strings.ToUpper(addr)+"\n"), 0o600)
	out, stderr, code := runSgload(t, nil, "forget", "--spool", root, "--bucket", b.URL(), "--from-file", list)
	if code != 0 {
		t.Fatalf("forget exited %d:\n%s", code, stderr)
	}
	if !strings.Contains(out, "forgot 1 addresses") || strings.Contains(out+stderr, "ivan") {
		t.Fatalf("forget printed %q / %q", out, stderr)
	}
	for _, dir := range []string{root, b.Dir} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				data, _ := os.ReadFile(p)
				if bytes.Contains(bytes.ToLower(data), []byte(addr)) {
					t.Errorf("%s still holds the address", p)
				}
			}
			return nil
		})
	}
	if _, stderr, code := runSgload(t, nil, "flush", "--spool", root, "--bucket", b.URL()); code != 0 {
		t.Fatalf("flush after forget exited %d:\n%s", code, stderr)
	}
	if out, _, code := runSgload(t, nil, "verify", "--spool", root, "--bucket", b.URL()); code != 0 {
		t.Fatalf("verify exited %d:\n%s", code, out)
	}
}

// TestReplayAndRebuildKilledAtEveryStep kills replay and rebuild with
// SIGKILL at each of their steps, reruns them, and checks that the new
// prefix holds every event once and that verify agrees.
func TestReplayAndRebuildKilledAtEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	want := sampleSpool(t, root)
	if _, stderr, code := runSgload(t, nil, "flush", "--spool", root, "--bucket", b.URL(), "--prefix", "orig", "--max-plan-bytes", "100KiB"); code != 0 {
		t.Fatalf("flush exited %d:\n%s", code, stderr)
	}
	check := func(t *testing.T, prefix string, withSpool bool) {
		t.Helper()
		tb := &testbucket.Bucket{Bucket: b.Bucket, Kind: "file", Dir: filepath.Join(b.Dir, prefix)}
		if rows, ids := rowsIn(t, tb); rows != want || ids != want {
			t.Fatalf("%s holds %d rows, %d distinct ids; want %d of each", prefix, rows, ids, want)
		}
		args := []string{"verify", "--bucket", b.URL(), "--prefix", prefix, "--spool", root}
		if !withSpool {
			args = append(args, "--no-spool")
		}
		if out, _, code := runSgload(t, nil, args...); code != 0 {
			t.Fatalf("verify %s exited %d:\n%s", prefix, code, out)
		}
	}
	for _, step := range loader.Steps {
		t.Run("replay/"+string(step), func(t *testing.T) {
			prefix := "replay-" + string(step)
			args := []string{"replay", "--spool", root, "--bucket", b.URL(), "--prefix", prefix, "--max-plan-bytes", "100KiB"}
			if _, stderr, code := runSgload(t, []string{"SGLOAD_CRASH_AT=" + string(step)}, args...); code != -1 {
				t.Fatalf("replay with SGLOAD_CRASH_AT=%s exited %d, want killed; stderr:\n%s", step, code, stderr)
			}
			if _, stderr, code := runSgload(t, nil, args...); code != 0 {
				t.Fatalf("rerun exited %d:\n%s", code, stderr)
			}
			check(t, prefix, true)
		})
	}
	for _, step := range []rewrite.Step{rewrite.StepOutputsUploaded, rewrite.StepCommitted} {
		t.Run("rebuild/"+string(step), func(t *testing.T) {
			prefix := "rebuild-" + string(step)
			args := []string{"rebuild", "--bucket", b.URL(), "--prefix", "orig", "--to-prefix", prefix, "--work-dir", t.TempDir()}
			if _, stderr, code := runSgload(t, []string{"SGLOAD_CRASH_AT=" + string(step)}, args...); code != -1 {
				t.Fatalf("rebuild with SGLOAD_CRASH_AT=%s exited %d, want killed; stderr:\n%s", step, code, stderr)
			}
			if _, stderr, code := runSgload(t, nil, args...); code != 0 {
				t.Fatalf("rerun exited %d:\n%s", code, stderr)
			}
			check(t, prefix, false)
		})
	}
}

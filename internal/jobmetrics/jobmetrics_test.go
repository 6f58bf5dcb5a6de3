package jobmetrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Three cron runs into one textfile: the totals count across runs, and a
// failed run keeps the last success time.
func TestTextfileAcrossRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sgload_flush.prom")
	t1 := time.Unix(1_800_000_000, 0)
	runs := []Result{
		{OK: true, At: t1, Duration: 2 * time.Second, Rows: 100, Bytes: 1000},
		{OK: true, At: t1.Add(time.Minute), Duration: time.Second, Rows: 50, Bytes: 500},
		{OK: false, At: t1.Add(2 * time.Minute), Duration: time.Second},
	}
	for _, r := range runs {
		if err := WriteTextfile(path, "flush", r); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`sgload_job_last_success_timestamp_seconds{job="flush"} 1.80000006e+09`,
		`sgload_job_last_run_timestamp_seconds{job="flush"} 1.80000012e+09`,
		`sgload_job_runs_total{job="flush",result="success"} 2`,
		`sgload_job_runs_total{job="flush",result="failure"} 1`,
		`sgload_job_rows_total{job="flush"} 150`,
		`sgload_job_bytes_total{job="flush"} 1500`,
		`sgload_job_last_rows{job="flush"} 0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("textfile lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(string(b))
	}
	if err := os.WriteFile(path, []byte("not metrics {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteTextfile(path, "flush", runs[0]); err == nil {
		t.Fatal("a damaged textfile was overwritten silently")
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), `sgload_job_runs_total{job="flush",result="success"} 1`) {
		t.Fatalf("a damaged textfile was not written anew:\n%s", b)
	}
}

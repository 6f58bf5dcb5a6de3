package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// Tests of issue 13: output that scripts read, and input a person types.

// runIn runs the binary in dir with exactly env (nothing inherited but
// PATH), so a test can leave a variable out.
func runIn(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(sgloadBin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	return runCmd(t, cmd)
}

// oneJSONLine checks that stdout is exactly one line of JSON with no null
// anywhere (lists are [] when empty), and returns it decoded.
func oneJSONLine(t *testing.T, stdout string) map[string]any {
	t.Helper()
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("stdout is not one line:\n%s", stdout)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if path := findNull(v, "$"); path != "" {
		t.Fatalf("null at %s in %s", path, stdout)
	}
	return v
}

func findNull(v any, path string) string {
	switch x := v.(type) {
	case nil:
		return path
	case map[string]any:
		for k, e := range x {
			// Optional objects (a commit that is not known) may be null.
			if k == "last_flush" || k == "last_compaction" {
				continue
			}
			if p := findNull(e, path+"."+k); p != "" {
				return p
			}
		}
	case []any:
		for i, e := range x {
			if p := findNull(e, fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

func TestJSONSummariesAreOneLineWithoutNulls(t *testing.T) {
	root := t.TempDir()
	sampleSpool(t, root)
	bucket := t.TempDir()
	out, stderr, code := runSgload(t, nil, "flush", "--json", "--spool", root, "--bucket", bucket)
	if code != 0 {
		t.Fatalf("flush: exit %d\n%s", code, stderr)
	}
	oneJSONLine(t, out)
	out, stderr, code = runSgload(t, nil, "flush", "--json", "--spool", root, "--bucket", bucket)
	if code != 0 {
		t.Fatalf("second flush: exit %d\n%s", code, stderr)
	}
	if v := oneJSONLine(t, out); v["plans"].(float64) != 0 {
		t.Fatalf("second flush did something: %s", out)
	}
	out, stderr, code = runSgload(t, nil, "verify", "--json", "--spool", root, "--bucket", bucket)
	if code != 0 {
		t.Fatalf("verify: exit %d\n%s", code, stderr)
	}
	oneJSONLine(t, out)
	out, _, code = runSgload(t, nil, "status", "--json", "--spool", root, "--bucket", bucket, "--expect-serve=false")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	oneJSONLine(t, out)

	// sync with every collection failing still prints [] lists and names them.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v3/scopes" {
			w.Write([]byte(`{"scopes":["marketing_campaigns.read"]}`))
			return
		}
		w.Write([]byte(`{"lists":[]}`))
	}))
	defer api.Close()
	prom := filepath.Join(t.TempDir(), "sgload_sync.prom")
	out, stderr, code = runSgload(t, []string{"SENDGRID_API_KEY=SG.x"}, "sync", "--json", "--spool", root, "--api-url", api.URL,
		"--collections", "lists", "--metrics-file", prom)
	if code != 0 {
		t.Fatalf("sync: exit %d\n%s", code, stderr)
	}
	oneJSONLine(t, out)
	if b, _ := os.ReadFile(prom); !strings.Contains(string(b), `sgload_job_runs_total{job="sync",result="success"} 1`) {
		t.Fatalf("sync metrics file:\n%s", b)
	}
}

func TestJSONFailureIsOneLineOnStdout(t *testing.T) {
	out, stderr, code := runSgload(t, nil, "flush", "--json", "--spool", filepath.Join(t.TempDir(), "typo"), "--bucket", t.TempDir())
	if code != exitUsage {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	v := oneJSONLine(t, out)
	if !strings.Contains(v["error"].(string), "no spool folder") || v["exit_code"].(float64) != exitUsage || v["hint"] == "" {
		t.Fatalf("error line %s", out)
	}
	if !strings.Contains(stderr, "error: no spool folder") {
		t.Fatalf("stderr lost the error:\n%s", stderr)
	}
}

func TestGCSWithoutCredentialsSaysSo(t *testing.T) {
	root := t.TempDir()
	sampleSpool(t, root)
	// No GOOGLE_APPLICATION_CREDENTIALS, no emulator, an empty HOME: the
	// check must answer before Google's SDK looks (or prints) anything.
	out, stderr, code := runIn(t, t.TempDir(), nil, "flush", "--json", "--spool", root, "--bucket", "gs://acme-sendgrid")
	if code != exitUsage {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	if strings.Contains(out, "Warning") {
		t.Fatalf("a warning reached stdout:\n%s", out)
	}
	v := oneJSONLine(t, out)
	for _, s := range []string{v["error"].(string), stderr} {
		if !strings.Contains(s, "credentials") || strings.Contains(s, "PEM") || strings.Contains(s, "asn1") {
			t.Fatalf("error does not say credentials are missing:\n%s", s)
		}
	}
	if !strings.Contains(stderr, "GOOGLE_APPLICATION_CREDENTIALS") {
		t.Fatalf("no hint:\n%s", stderr)
	}
}

// duplicateKey returns a key that appears twice in one JSON object of line.
func duplicateKey(t *testing.T, line []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	type frame struct {
		object bool
		seen   map[string]bool
		key    bool // the next string is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return ""
		}
		if err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch x := tok.(type) {
		case json.Delim:
			switch x {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{object: x == '{', seen: map[string]bool{}, key: x == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				if top.seen[x] {
					return x
				}
				top.seen[x] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

func TestLogLinesHaveNoDuplicateKeys(t *testing.T) {
	// A segment left open by a crash makes the spool log its recovery.
	crashed := t.TempDir()
	w, err := spool.OpenWriter(crashed, spool.Options{Node: "dup", MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	events := spooltest.Lines(t, "../../testdata/events/sample-2000.ndjson")[:2]
	prep, err := spool.Prepare(len(events), "none", nil, spooltest.Body(events))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(context.Background(), prep); err != nil {
		t.Fatal(err)
	}
	open, _ := w.Dir().OpenSegments()
	root := t.TempDir()
	if len(open) != 1 {
		t.Fatalf("open segments: %v", open)
	}
	data, _ := os.ReadFile(open[0].Path)
	w.Close()
	if err := os.MkdirAll(filepath.Join(root, "events"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "events", open[0].Name()), data, 0o644)
	p := startSgload(t, nil, "serve", "--insecure-no-auth", "--spool", root, "--addr", "127.0.0.1:0", "--node", "dup")
	line := p.waitLog(t, "serving")
	if line["component"] != "serve" {
		t.Fatalf("serving line: %v", line)
	}
	p.cmd.Process.Signal(os.Interrupt)
	p.wait()
	spoolLines := 0
	for _, l := range strings.Split(strings.TrimSpace(p.rawLogs()), "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		if k := duplicateKey(t, []byte(l)); k != "" {
			t.Fatalf("key %q twice in %s", k, l)
		}
		if strings.Contains(l, `"component":"spool"`) {
			spoolLines++
		}
	}
	if spoolLines == 0 {
		t.Fatalf("no spool log line to check:\n%s", p.rawLogs())
	}
}

func TestProgressLineEndsBeforeALogLine(t *testing.T) {
	root := t.TempDir()
	sampleSpool(t, root)
	_, stderr, code := runSgload(t, nil, "flush", "--progress", "always", "--log-format", "json",
		"--spool", root, "--bucket", t.TempDir(), "--max-plan-bytes", "200KiB")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "ETA") || !strings.Contains(stderr, "plan committed") {
		t.Fatalf("want progress and log lines:\n%q", stderr)
	}
	// What a terminal shows: each \r returns to the start of the line.
	if m := regexp.MustCompile(`ETA [^\r\n]*(\{"time"|time=)`).FindString(stderr); m != "" {
		t.Fatalf("a log line shares the progress line: %q", m)
	}
}

func TestInputMistakes(t *testing.T) {
	root := t.TempDir()
	sampleSpool(t, root)
	tests := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stderr string
	}{
		{"one slash after the scheme", nil, []string{"flush", "--spool", root, "--bucket", "s3:/acme"}, exitUsage, "s3://acme"},
		{"views of a missing folder", nil, []string{"views", "--dialect", "duckdb", "--bucket", "warehuose"}, exitUsage, "no bucket folder"},
		{"verify of a missing folder", nil, []string{"verify", "--spool", root, "--bucket", "warehuose"}, exitUsage, "no bucket folder"},
		{"unknown command", nil, []string{"flsuh"}, exitUsage, "did you mean sgload flush?"},
		{"a spool as an argument", nil, []string{"flush", root, "--bucket", "x"}, exitUsage, "did you mean --spool " + root},
		{"--log-level after the command", nil, []string{"flush", "--spool", root, "--bucket", "out", "--dry-run", "--log-level", "warn"}, 0, ""},
		{"bad --log-level after the command", nil, []string{"flush", "--spool", root, "--bucket", "out", "--log-level", "loud"}, exitUsage, "use debug, info"},
		{"--addr without a colon", nil, []string{"serve", "--insecure-no-auth", "--spool", root, "--addr", "17084"}, exitUsage, "--addr :17084"},
		{"Azure without an account", nil, []string{"flush", "--spool", root, "--bucket", "azblob://acme"}, exitUsage, "hint: set AZURE_STORAGE_ACCOUNT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cwd := t.TempDir()
			_, stderr, code := runIn(t, cwd, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tc.code, tc.stderr)
			}
			if code != 0 {
				if entries, _ := os.ReadDir(cwd); len(entries) > 0 {
					t.Fatalf("a refused command left %s in the working folder", entries[0].Name())
				}
			}
		})
	}
}

// A mistyped --spool is the same error, exit code and hint for every
// command that reads a spool, and creates nothing.
func TestMissingSpoolIsUniform(t *testing.T) {
	for _, args := range [][]string{
		{"flush", "--bucket", "b"},
		{"verify", "--bucket", "b"},
		{"forward"},
		{"sync", "--api-url", "http://127.0.0.1:1"},
		{"status"},
	} {
		t.Run(args[0], func(t *testing.T) {
			cwd := t.TempDir()
			env := []string{"SGLOAD_SEGMENT_WRITE_KEY=wk", "SENDGRID_API_KEY=SG.x"}
			_, stderr, code := runIn(t, cwd, env, append(args, "--spool", "spoool")...)
			if code != exitUsage || !strings.Contains(stderr, "error: no spool folder") || !strings.Contains(stderr, "hint: check --spool") {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if _, err := os.Stat(filepath.Join(cwd, "spoool")); err == nil {
				t.Fatal("the spool was created")
			}
		})
	}
}

func TestSyncChecksTheKeyOnceUpFront(t *testing.T) {
	var calls atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	root := t.TempDir()
	env := []string{"SENDGRID_API_KEY=SG.key"}
	_, stderr, code := runSgload(t, env, "sync", "--spool", root, "--api-url", down.URL)
	if code != exitFailure || calls.Load() != 1 || !strings.Contains(stderr, "hint:") {
		t.Fatalf("API answering 503: exit %d after %d requests, want 1 after 1\n%s", code, calls.Load(), stderr)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	_, stderr, code = runSgload(t, env, "sync", "--spool", root, "--api-url", closed)
	if code != exitFailure || !strings.Contains(stderr, "check the network") {
		t.Fatalf("unreachable API: exit %d\n%s", code, stderr)
	}

	scoped := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`{"scopes":["mail.send","marketing.read"]}`))
	}))
	defer scoped.Close()
	calls.Store(0)
	_, stderr, code = runSgload(t, env, "sync", "--spool", root, "--api-url", scoped.URL, "--collections", "mc_lists,bounces,templates")
	if code != exitUsage || calls.Load() != 1 || !strings.Contains(stderr, "suppression.read (for bounces)") || !strings.Contains(stderr, "templates.read") {
		t.Fatalf("missing scopes: exit %d after %d requests\n%s", code, calls.Load(), stderr)
	}
}

func TestLockMessageNamesThePid(t *testing.T) {
	root := t.TempDir()
	p := startSgload(t, nil, "serve", "--insecure-no-auth", "--spool", root, "--addr", "127.0.0.1:0")
	p.waitLog(t, "serving")
	_, stderr, code := runSgload(t, nil, "serve", "--insecure-no-auth", "--spool", root, "--addr", "127.0.0.1:0")
	want := fmt.Sprintf("pid %d holds", p.cmd.Process.Pid)
	if code != exitBusy || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, want %d and %q:\n%s", code, exitBusy, want, stderr)
	}
}

func TestDryRunTouchesNothing(t *testing.T) {
	root := t.TempDir()
	sampleSpool(t, root)
	bucket := t.TempDir()
	out, stderr, code := runSgload(t, nil, "flush", "--dry-run", "--spool", root, "--bucket", bucket)
	if code != 0 || !strings.Contains(out, "dry run") {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	var left []string
	filepath.WalkDir(bucket, func(p string, _ os.DirEntry, _ error) error {
		if p != bucket {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Fatalf("dry run left %v in the bucket", left)
	}
}

func TestNothingToFlushMentionsTheOpenSegment(t *testing.T) {
	root := t.TempDir()
	w, err := spool.OpenWriter(root, spool.Options{Node: "open", MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	events := spooltest.Lines(t, "../../testdata/events/sample-2000.ndjson")[:3]
	p, err := spool.Prepare(len(events), "none", nil, spooltest.Body(events))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runSgload(t, nil, "flush", "--spool", root, "--bucket", t.TempDir())
	if code != 0 || !strings.Contains(out, "nothing to flush: 3 events") || !strings.Contains(out, "open segment") {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	out, _, _ = runSgload(t, nil, "flush", "--json", "--spool", root, "--bucket", t.TempDir())
	if v := oneJSONLine(t, out); v["open_segment_events"].(float64) != 3 {
		t.Fatalf("json: %s", out)
	}
}

func TestVersionNamesTheCommit(t *testing.T) {
	version, commit = "v1.2.3", "0123456789abcdef0123"
	defer func() { version, commit = "dev", "" }()
	if got := versionLine(); !strings.HasPrefix(got, "v1.2.3 (commit 0123456789ab") {
		t.Fatalf("version line %q", got)
	}
	out, _, code := runSgload(t, nil, "--version")
	if code != 0 || !regexp.MustCompile(`^sgload \S+ \(commit \S+.*go1\.`).MatchString(out) {
		t.Fatalf("--version: exit %d %q", code, out)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// run serves the status page and, once its flush has run, the job metrics
// on /metrics and the last flush commit on the page.
func TestRunServesStatusAndJobMetrics(t *testing.T) {
	root := t.TempDir()
	sampleSpool(t, root)
	p := startSgload(t, nil, "run", "--insecure-no-auth", "--spool", root, "--bucket", t.TempDir(),
		"--addr", "127.0.0.1:0", "--flush-interval", "200ms")
	line := p.waitLog(t, "serving")
	p.waitLog(t, "flushed")
	base := fmt.Sprintf("http://%s", line["addr"])
	metrics := get(t, base+"/metrics")
	for _, want := range []string{`sgload_job_last_success_timestamp_seconds{job="flush"}`, `sgload_job_runs_total{job="flush",result="success"}`, `sgload_job_rows_total{job="flush"}`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
	page := get(t, base+"/status")
	if !strings.Contains(page, "<th>serve</th><td>up") || !strings.Contains(page, "_sgload/manifests/cli/") || !strings.Contains(page, "<svg") {
		t.Fatalf("status page:\n%s", page)
	}
	v := oneJSONLine(t, get(t, base+"/status?format=json"))
	if v["last_flush"] == nil {
		t.Fatalf("no last flush: %v", v)
	}
}

func TestMetricsFileKeepsTheLastSuccess(t *testing.T) {
	root := t.TempDir()
	sampleSpool(t, root)
	prom := filepath.Join(t.TempDir(), "sgload_flush.prom")
	_, stderr, code := runSgload(t, nil, "flush", "--spool", root, "--bucket", t.TempDir(), "--metrics-file", prom)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	first, _ := os.ReadFile(prom)
	success := regexp.MustCompile(`(?m)^sgload_job_last_success_timestamp_seconds\{job="flush"\} (\S+)$`)
	m := success.FindSubmatch(first)
	if m == nil || !regexp.MustCompile(`(?m)^sgload_job_last_rows\{job="flush"\} [1-9]`).Match(first) {
		t.Fatalf("metrics file:\n%s", first)
	}
	// A failed run keeps the last success and counts the failure.
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	_, _, code = runSgload(t, nil, "flush", "--spool", root, "--bucket", notDir+"/sub", "--metrics-file", prom)
	if code == 0 {
		t.Fatal("flush into a path under a file succeeded")
	}
	second, _ := os.ReadFile(prom)
	if m2 := success.FindSubmatch(second); m2 == nil || string(m2[1]) != string(m[1]) ||
		!strings.Contains(string(second), `sgload_job_runs_total{job="flush",result="failure"} 1`) ||
		!strings.Contains(string(second), `sgload_job_runs_total{job="flush",result="success"} 1`) {
		t.Fatalf("after a failure:\n%s", second)
	}
	if entries, _ := os.ReadDir(filepath.Dir(prom)); len(entries) != 1 {
		t.Fatalf("temporary files left beside the textfile: %v", entries)
	}
}

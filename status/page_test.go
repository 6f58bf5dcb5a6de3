package status

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
)

// chromium finds Debian's chromium (scripts/test.sh installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SGLOAD_REQUIRE_EMULATORS") != "" {
		t.Fatal("chromium is not installed: run make test, which installs it")
	}
	t.Skip("no chromium (make test installs it)")
	return ""
}

// headless runs chromium on url with the flags this machine needs (no
// sandbox as root, nothing fetched from the network) and returns stdout.
func headless(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.Bytes()
}

// TestStatusPageInABrowser serves the page over a real spool with six
// hours of samples, loads it in headless Chromium, checks what the browser
// built, and keeps a screenshot: status-page.png in the test's artifact
// folder (make test keeps it under var/test-artifacts/).
func TestStatusPageInABrowser(t *testing.T) {
	bin := chromium(t)
	d, events := filled(t)
	h := NewHistory(360)
	start := time.Now().Add(-6 * time.Hour)
	for i := range 360 {
		x := float64(i)
		h.Add(Point{At: start.Add(time.Duration(i) * time.Minute),
			EventsPerSecond: 40 + 30*math.Sin(x/25) + 10*math.Sin(x/7),
			BacklogBytes:    int64(5e6 + 4e6*math.Sin(x/40))})
	}
	page := &Page{Options: Options{Spool: d, EventRate: func() float64 { return 42.5 }}, Thresholds: DefaultThresholds, History: h}
	srv := httptest.NewServer(page)
	defer srv.Close()

	dom := string(headless(t, bin, "--dump-dom", srv.URL))
	for _, want := range []string{
		`<span class="bad" id="verdict">2 problems</span>`,
		"serve is not running on this spool",
		"1 file (8 B) in quarantine",
		"<th>backlog</th><td>" + humanize.Comma(events) + " events in",
		"<th>events/s</th><td>42.5",
		`aria-label="events/s over the last hours"`,
		`aria-label="backlog over the last hours"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if n := strings.Count(dom, "<polyline"); n != 2 {
		t.Errorf("%d chart lines, want 2", n)
	}
	if strings.Contains(dom, "<script") {
		t.Error("the page has a script")
	}
	if t.Failed() {
		t.Fatalf("DOM:\n%s", dom)
	}

	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	headless(t, bin, "--window-size=900,1000", "--screenshot="+shot, srv.URL)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// Something was drawn: the chart's blue line among the page's colours.
	blue := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			if bl>>8 > 200 && r>>8 < 80 && g>>8 < 150 {
				blue++
			}
		}
	}
	if b.Dx() != 900 || b.Dy() != 1000 || blue < 100 {
		t.Fatalf("screenshot %v with %d chart pixels", b, blue)
	}
	t.Logf("screenshot: %s", shot)
}

func TestStatusPageJSON(t *testing.T) {
	d, _ := filled(t)
	page := &Page{Options: Options{Spool: d}, Thresholds: DefaultThresholds, History: NewHistory(10)}
	srv := httptest.NewServer(page)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if strings.Count(body.String(), "\n") != 1 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %q", resp.Header.Get("Content-Type"), body.String())
	}
	var r Report
	if err := json.Unmarshal(body.Bytes(), &r); err != nil || len(r.Problems) == 0 {
		t.Fatalf("%v %+v", err, r)
	}
}

package webhook

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sgload/sgload/spool"
)

// rawPost opens a connection and sends a POST's headers and the first part
// of its body; the test sends the rest (or not) and reads the answer.
type rawPost struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func startRawPost(t *testing.T, addr, path string, hdr http.Header, contentLength int, first []byte) *rawPost {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: sgload\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, contentLength)
	for k, vs := range hdr {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	b.Write(first)
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	return &rawPost{t: t, conn: c, br: bufio.NewReader(c)}
}

// status reads the answer's status (the server may answer before the body
// is complete).
func (p *rawPost) status() int {
	p.t.Helper()
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		p.t.Fatalf("read answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (h *harness) addr() string { return strings.TrimPrefix(h.srv.URL, "http://") }

func (h *harness) readyz() (int, string) {
	h.t.Helper()
	resp, err := http.Get(h.srv.URL + "/readyz")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func signatureHarness(t *testing.T, cfg Config) (*harness, *testSigner) {
	t.Helper()
	signer := newTestSigner(t)
	sig, err := NewSignature([]string{signer.publicKey})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Signature = sig
	if cfg.SpillDir == "" {
		cfg.SpillDir = t.TempDir()
	}
	return newHarness(t, cfg, spool.Options{}), signer
}

// TestSlowBodyIsCut: a sender that stops sending gets 408 once the body
// falls behind the minimum rate, whatever it claimed.
func TestSlowBodyIsCut(t *testing.T) {
	h, signer := signatureHarness(t, Config{MinBodyRate: 1 << 20, BodyGrace: 100 * time.Millisecond})
	p := startRawPost(t, h.addr(), "/webhook/sendgrid", signer.sign([]byte(twoEvents), time.Now()), 1<<20, []byte("[{"))
	if st := p.status(); st != http.StatusRequestTimeout {
		t.Fatalf("stalled body: status %d, want 408", st)
	}
	if got := h.metric(`sgload_webhook_refused_total{reason="slow_body"}`); got != "1" {
		t.Errorf("slow_body refusals = %q, want 1", got)
	}
}

// TestForgedBodiesDoNotCrowdOutSendGrid is the hostile mix at a small
// scale, in one process: large bodies with a bad signature are held
// mid-way (their senders stall) while a valid signed POST comes in. The
// forgeries wait on disk, not in memory; past their share of the
// unauthenticated budget they get 503; the valid POST gets 200; readyz
// reports the pressure; once the forgers finish, they get 401 and nothing
// of theirs is left on disk.
func TestForgedBodiesDoNotCrowdOutSendGrid(t *testing.T) {
	spillDir := t.TempDir()
	h, signer := signatureHarness(t, Config{
		SpillBytes: 64 << 10, MaxBodyMemory: 4 << 20, MaxUnauthenticatedBytes: 2 << 20, SpillDir: spillDir,
		MinBodyRate: -1,
	})
	const forged = 8 // each holds 256 KiB of a 1 MiB body: 2 MiB in all, over the 1.5 MiB large bodies may use
	chunk := bytes.Repeat([]byte(" "), 256<<10)
	var held []*rawPost
	for range forged {
		hdr := signer.sign([]byte("something else"), time.Now())
		p := startRawPost(t, h.addr(), "/webhook/sendgrid", hdr, 1<<20, append([]byte("["), chunk...))
		held = append(held, p)
	}
	// Wait until the server holds what it can of them (its gauge says so)
	// and has refused the rest.
	for i := 0; ; i++ {
		u := h.metric("sgload_webhook_unauthenticated_bytes")
		r := h.metric(`sgload_webhook_refused_total{reason="unauthenticated"}`)
		if r != "0" && u != "0" {
			break
		}
		if i > 2000 {
			t.Fatalf("forged bodies not held: unauthenticated bytes %s, refused %s", u, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st, _ := h.readyz(); st != 200 {
		t.Fatalf("readyz %d under forged bodies", st)
	}
	_, ready := h.readyz()
	if !strings.Contains(ready, "pressure: high") || !strings.Contains(ready, "not yet authenticated") {
		t.Errorf("readyz does not report the pressure:\n%s", ready)
	}
	// A real, signed POST of SendGrid's size still gets through.
	body := []byte(twoEvents)
	if st, resp := h.post("/webhook/sendgrid", body, signer.sign(body, time.Now())); st != 200 {
		t.Fatalf("valid POST under forged bodies: %d %v", st, resp)
	}
	if used := h.spoolMem(); used > 4<<20 {
		t.Fatalf("bodies in memory %d, over the budget", used)
	}
	// The forgers give up: everything they held is given back, nothing of
	// theirs is left on disk.
	for _, p := range held {
		p.conn.Close()
	}
	h.waitMetric("sgload_webhook_unauthenticated_requests", "0")
	if u := h.metric("sgload_webhook_unauthenticated_bytes"); u != "0" {
		t.Errorf("unauthenticated bytes %s after every request ended, want 0", u)
	}
	if n := h.metric("sgload_webhook_spilled_bodies_total"); n == "0" {
		t.Error("no body spilled to disk")
	}
	if left, _ := os.ReadDir(spillDir); len(left) != 0 {
		t.Errorf("spill folder holds %d files", len(left))
	}
	// A forged large body sent whole: checked on disk, refused with 401.
	big := append(append([]byte("["), bytes.Repeat([]byte(" "), 200<<10)...), ']')
	if st, _ := h.post("/webhook/sendgrid", big, signer.sign([]byte("[]"), time.Now())); st != 401 {
		t.Errorf("forged large body: status %d, want 401", st)
	}
	if recs := h.stored(); len(recs) != 1 {
		t.Fatalf("stored %d records, want the one valid POST", len(recs))
	}
}

// waitMetric waits until a metric has a value (the server notices a closed
// connection on its next read).
func (h *harness) waitMetric(name, want string) {
	h.t.Helper()
	for i := 0; h.metric(name) != want; i++ {
		if i > 2000 {
			h.t.Fatalf("%s = %s, want %s", name, h.metric(name), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spoolMem is the memory budget in use, from the metric.
func (h *harness) spoolMem() int64 {
	var n int64
	fmt.Sscan(h.metric("sgload_webhook_body_memory_bytes"), &n)
	return n
}

// TestLargeValidBodySpillsAndLands: a signed body over SpillBytes waits on
// disk for its check, then is stored byte for byte.
func TestLargeValidBodySpillsAndLands(t *testing.T) {
	h, signer := signatureHarness(t, Config{SpillBytes: 4 << 10})
	var events []string
	for i := range 200 {
		events = append(events, fmt.Sprintf(`{"event":"open","sg_event_id":"big-%d","email":"a@example.com"}`, i))
	}
	body := []byte("[" + strings.Join(events, ",\r\n") + "\r\n]\r\n")
	if st, resp := h.post("/webhook/sendgrid", body, signer.sign(body, time.Now())); st != 200 || resp["accepted"] != float64(200) {
		t.Fatalf("status %d %v", st, resp)
	}
	if n := h.metric("sgload_webhook_spilled_bodies_total"); n != "1" {
		t.Errorf("spilled %s bodies, want 1", n)
	}
	recs := h.stored()
	if len(recs) != 1 || !bytes.Equal(recs[0].Body, body) {
		t.Fatal("spilled body not stored byte for byte")
	}
}

func TestAllowCIDR(t *testing.T) {
	for _, tc := range []struct {
		nets string
		want int
	}{{"10.0.0.0/8", 403}, {"10.0.0.0/8,127.0.0.0/8", 200}, {"::1,127.0.0.1", 200}} {
		nets, err := ParseNetworks(strings.Split(tc.nets, ","))
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, Config{InsecureNoAuth: true, AllowNetworks: nets}, spool.Options{})
		if st, _ := h.post("/webhook/sendgrid", []byte(twoEvents), nil); st != tc.want {
			t.Errorf("--allow-cidr %s: status %d, want %d", tc.nets, st, tc.want)
		}
	}
	if _, err := ParseNetworks([]string{"not-a-network"}); err == nil {
		t.Error("bad network accepted")
	}
}

// TestTokenEndpointSlowsGuessing: wrong secrets are counted, logged a few
// times a second at most (never the secret), and after a burst the address
// is answered 429 without a check, even with the right secret, until it
// has waited.
func TestTokenEndpointSlowsGuessing(t *testing.T) {
	o, err := NewOAuth("sendgrid", "0123456789abcdef-secret", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	h := newHarness(t, Config{OAuth: o, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}, spool.Options{})
	try := func(secret string) *http.Response {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"sendgrid"}, "client_secret": {secret}}
		resp, err := http.PostForm(h.srv.URL+"/oauth/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if st := try("0123456789abcdef-secret").StatusCode; st != 200 {
		t.Fatalf("right secret: %d", st)
	}
	const guess = "GUESSED-SECRET-MARKER"
	for i := range tokenFailBurst {
		if st := try(guess).StatusCode; st != 401 {
			t.Fatalf("wrong secret %d: %d, want 401", i, st)
		}
	}
	resp := try("0123456789abcdef-secret")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d (Retry-After %q), want 429", tokenFailBurst, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if got := h.metric(`sgload_oauth_token_requests_total{result="invalid_client"}`); got != fmt.Sprint(tokenFailBurst) {
		t.Errorf("invalid_client = %q", got)
	}
	if got := h.metric(`sgload_oauth_token_requests_total{result="throttled"}`); got != "1" {
		t.Errorf("throttled = %q", got)
	}
	if got := h.metric(`sgload_oauth_token_requests_total{result="issued"}`); got != "1" {
		t.Errorf("issued = %q", got)
	}
	out := logs.String()
	if !strings.Contains(out, "OAuth token request refused") || strings.Contains(out, guess) || strings.Contains(out, "0123456789abcdef-secret") {
		t.Errorf("token endpoint logs:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReadyzNamesNoPathOrSpace: the public readyz says why it is not ready
// without the spool's path or its free bytes.
func TestReadyzNamesNoPathOrSpace(t *testing.T) {
	h := newHarness(t, Config{InsecureNoAuth: true}, spool.Options{MinFreeBytes: 1 << 62})
	st, body := h.readyz()
	if st != 503 || !strings.Contains(body, "free-space floor") {
		t.Fatalf("readyz %d:\n%s", st, body)
	}
	if strings.Contains(body, h.root) || strings.ContainsAny(strings.SplitN(body, "\n", 2)[0], "0123456789") {
		t.Fatalf("readyz leaks the spool's path or free bytes:\n%s", body)
	}
	var _ = netip.Addr{}
}

// TestUnloadableBodiesQuarantined: what flush could not load (too deep,
// not UTF-8) gets 400 and is kept in quarantine, as an unparsable body is,
// with a short reason.
func TestUnloadableBodiesQuarantined(t *testing.T) {
	h := newHarness(t, Config{InsecureNoAuth: true}, spool.Options{})
	deep := "[" + strings.Repeat(`{"a":`, 300) + "1" + strings.Repeat("}", 300) + "]"
	for _, body := range []string{deep, "[{\"email\":\"a\xffb\"}]"} {
		if st, resp := h.post("/webhook/sendgrid", []byte(body), nil); st != 400 || resp["quarantined"] == nil {
			t.Fatalf("status %d %v, want 400 and quarantined", st, resp)
		}
	}
	q := h.quarantined()
	if len(q) != 2 {
		t.Fatalf("%d quarantined, want 2", len(q))
	}
	for _, x := range q {
		if len(x.Reason) > 100 {
			t.Errorf("reason of %d bytes: %.100s", len(x.Reason), x.Reason)
		}
	}
}

package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sgload/sgload/spool"
)

type harness struct {
	t     *testing.T
	root  string
	spool *spool.Writer
	srv   *httptest.Server
	reg   *prometheus.Registry
}

// newHarness starts a Server over a real spool in a temporary folder.
func newHarness(t *testing.T, cfg Config, sopts spool.Options) *harness {
	t.Helper()
	h := &harness{t: t, root: t.TempDir(), reg: prometheus.NewRegistry()}
	if sopts.MinFreeBytes == 0 {
		sopts.MinFreeBytes = -1
	}
	sopts.Node = "test"
	sopts.Registerer = h.reg
	sp, err := spool.OpenWriter(h.root, sopts)
	if err != nil {
		t.Fatal(err)
	}
	h.spool = sp
	cfg.Spool, cfg.Registry = sp, h.reg
	s, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(s)
	t.Cleanup(func() { h.srv.Close(); sp.Close() })
	return h
}

func (h *harness) post(path string, body []byte, hdr http.Header) (int, map[string]any) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.srv.URL+path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// stored closes the spool and returns every record in it.
func (h *harness) stored() []*spool.Record {
	h.t.Helper()
	h.srv.Close()
	if err := h.spool.Close(); err != nil {
		h.t.Fatal(err)
	}
	segs, err := spool.ListSegments(filepath.Join(h.root, spool.EventsDir), spool.SealedSuffix)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*spool.Record
	for _, sg := range segs {
		r, err := spool.OpenReader(sg.Path)
		if err != nil {
			h.t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				h.t.Fatal(err)
			}
			out = append(out, rec)
		}
		r.Close()
	}
	return out
}

func (h *harness) quarantined() []spool.Quarantined {
	h.t.Helper()
	entries, _ := os.ReadDir(filepath.Join(h.root, spool.QuarantineDir))
	var out []spool.Quarantined
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(h.root, spool.QuarantineDir, e.Name()))
		if err != nil {
			h.t.Fatal(err)
		}
		var q spool.Quarantined
		if err := json.Unmarshal(b, &q); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, q)
	}
	return out
}

func (h *harness) metric(name string) string {
	h.t.Helper()
	resp, err := http.Get(h.srv.URL + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

const twoEvents = "[{\"email\":\"a@example.com\",\"event\":\"open\",\"sg_event_id\":\"e1\"},\r\n{\"email\":\"b@example.com\",\"event\":\"click\",\"sg_event_id\":\"e2\"}\r\n]\r\n"

func TestStatuses(t *testing.T) {
	h := newHarness(t, Config{InsecureNoAuth: true, MaxBodyBytes: 1024}, spool.Options{})
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		status     int
		quarantine bool
	}{
		{"events", "POST", "/webhook/sendgrid", twoEvents, 200, false},
		{"zero events", "POST", "/webhook/sendgrid", "[]", 200, false},
		{"not JSON", "POST", "/webhook/sendgrid", "event=open&email=x", 400, true},
		{"truncated JSON", "POST", "/webhook/sendgrid", `[{"event":"open"`, 400, true},
		{"single object, not an array", "POST", "/webhook/sendgrid", `{"event":"open"}`, 400, true},
		{"array of strings", "POST", "/webhook/sendgrid", `["open"]`, 400, true},
		{"over the body limit", "POST", "/webhook/sendgrid", "[" + strings.Repeat(`{"a":1},`, 200) + "{}]", 413, false},
		{"wrong method", "GET", "/webhook/sendgrid", "", 405, false},
		{"unknown path", "POST", "/webhook/other", "[]", 404, false},
		{"token path without tokens configured", "POST", "/webhook/sendgrid/abc", "[]", 404, false},
		{"healthz", "GET", "/healthz", "", 200, false},
		{"readyz", "GET", "/readyz", "", 200, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.quarantined())
			req, _ := http.NewRequest(tc.method, h.srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := len(h.quarantined()) - before; got != map[bool]int{true: 1, false: 0}[tc.quarantine] {
				t.Fatalf("%d new quarantine files, want quarantine=%v", got, tc.quarantine)
			}
		})
	}
	recs := h.stored()
	if len(recs) != 1 || string(recs[0].Body) != twoEvents || recs[0].Events != 2 {
		t.Fatalf("spool holds %d records; want exactly the one 2-event POST, byte for byte", len(recs))
	}
}

func TestQuarantineKeepsBodyAndHeaders(t *testing.T) {
	h := newHarness(t, Config{InsecureNoAuth: true}, spool.Options{})
	body := []byte("not json \x00\xff\r\n")
	hdr := http.Header{"User-Agent": {"SendGrid Event API"}, "Content-Type": {"application/json"}}
	for range 3 { // a sender retrying the same bad body fills one file
		if st, resp := h.post("/webhook/sendgrid", body, hdr); st != 400 || resp["quarantined"] == nil {
			t.Fatalf("status %d %v", st, resp)
		}
	}
	q := h.quarantined()
	if len(q) != 1 {
		t.Fatalf("%d quarantine files, want 1", len(q))
	}
	if !bytes.Equal(q[0].Body, body) || q[0].Header["User-Agent"] != "SendGrid Event API" || q[0].Reason == "" {
		t.Fatalf("quarantined %+v", q[0])
	}
}

func TestServiceUnavailable(t *testing.T) {
	t.Run("disk below floor", func(t *testing.T) {
		h := newHarness(t, Config{InsecureNoAuth: true}, spool.Options{MinFreeBytes: 1 << 62})
		resp, err := http.Post(h.srv.URL+"/webhook/sendgrid", "application/json", strings.NewReader(twoEvents))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if r, _ := http.Get(h.srv.URL + "/readyz"); r.StatusCode != 503 {
			t.Fatalf("readyz %d, want 503", r.StatusCode)
		}
		if len(h.stored()) != 0 {
			t.Fatal("stored events while refusing")
		}
	})
	t.Run("spool folder gone", func(t *testing.T) {
		h := newHarness(t, Config{InsecureNoAuth: true}, spool.Options{})
		os.RemoveAll(filepath.Join(h.root, spool.EventsDir))
		if st, _ := h.post("/webhook/sendgrid", []byte(twoEvents), nil); st != 503 {
			t.Fatalf("status %d, want 503", st)
		}
		if r, _ := http.Get(h.srv.URL + "/readyz"); r.StatusCode != 503 {
			t.Fatalf("readyz %d, want 503", r.StatusCode)
		}
	})
	t.Run("spool closed (shutting down)", func(t *testing.T) {
		h := newHarness(t, Config{InsecureNoAuth: true}, spool.Options{})
		h.spool.Close()
		if st, _ := h.post("/webhook/sendgrid", []byte(twoEvents), nil); st != 503 {
			t.Fatalf("status %d, want 503", st)
		}
	})
}

// TestRealSignedPost replays SendGrid's own signed 11-event test POST and
// checks that the spool keeps it so exactly that it still verifies.
func TestRealSignedPost(t *testing.T) {
	vf := loadVectors(t)
	var body []byte
	hdr := http.Header{}
	var key string
	for _, v := range vf.Vectors {
		if v.ID == "stronggrid-real-test-your-integration" {
			body, _ = base64.StdEncoding.DecodeString(v.PayloadBase64)
			hdr.Set(SignatureHeader, v.Signature)
			hdr.Set(TimestampHeader, v.Timestamp)
			key = vf.Keys[v.PublicKeyRef].Value
		}
	}
	sig, err := NewSignature([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	sig.Now = func() time.Time { return time.Unix(1606575372+60, 0) }
	h := newHarness(t, Config{Signature: sig}, spool.Options{})
	if st, resp := h.post("/webhook/sendgrid", body, hdr); st != 200 || resp["accepted"] != float64(11) {
		t.Fatalf("status %d %v; want 200 with 11 events", st, resp)
	}
	bad := bytes.Clone(body)
	bad[10] ^= 1
	if st, _ := h.post("/webhook/sendgrid", bad, hdr); st != 401 {
		t.Fatalf("tampered body: status %d, want 401", st)
	}
	recs := h.stored()
	if len(recs) != 1 || recs[0].Auth != "signature" {
		t.Fatalf("stored %d records", len(recs))
	}
	if !bytes.Equal(recs[0].Body, body) {
		t.Fatal("stored body differs from the bytes received")
	}
	again := http.Header{}
	for k, v := range recs[0].Header {
		again.Set(k, v)
	}
	if err := sig.Verify(again, recs[0].Body); err != nil {
		t.Fatalf("stored POST no longer verifies: %v", err)
	}
}

func TestURLTokenRotation(t *testing.T) {
	old, next := NewURLToken(), NewURLToken()
	toks, err := NewURLTokens([]string{old, next})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{URLTokens: toks}, spool.Options{})
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/webhook/sendgrid/" + old, 200},
		{"/webhook/sendgrid/" + next, 200},
		{"/webhook/sendgrid/" + NewURLToken(), 401},
		{"/webhook/sendgrid/" + old[:len(old)-1], 401},
		{"/webhook/sendgrid", 401},
	} {
		if st, _ := h.post(tc.path, []byte(twoEvents), nil); st != tc.want {
			t.Errorf("POST %s...: status %d, want %d", tc.path[:24], st, tc.want)
		}
	}
	if got := h.metric(`sgload_webhook_auth_failures_total{method="url_token"}`); got != "3" {
		t.Errorf("url_token auth failures = %q, want 3", got)
	}
	if n := len(h.stored()); n != 2 {
		t.Fatalf("stored %d records, want 2", n)
	}
	// After rotation only the new token is configured: the old one is refused.
	rotated, _ := NewURLTokens([]string{next})
	h2 := newHarness(t, Config{URLTokens: rotated}, spool.Options{})
	if st, _ := h2.post("/webhook/sendgrid/"+old, []byte(twoEvents), nil); st != 401 {
		t.Fatalf("old token after rotation: %d, want 401", st)
	}
	if n := len(h2.stored()); n != 0 {
		t.Fatalf("refused POST stored %d records", n)
	}
	if _, err := NewURLTokens([]string{"short"}); err == nil {
		t.Fatal("short token accepted")
	}
}

func TestOAuth(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	o, err := NewOAuth("sendgrid", "0123456789abcdef-secret", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	o.Now = func() time.Time { return now }
	h := newHarness(t, Config{OAuth: o}, spool.Options{})

	token := func(form url.Values, basicID, basicSecret string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", h.srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basicID != "" {
			req.SetBasicAuth(basicID, basicSecret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Error("token response is cacheable")
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	st, m := token(url.Values{"grant_type": {"client_credentials"}}, "sendgrid", "0123456789abcdef-secret")
	if st != 200 || m["token_type"] != "Bearer" || m["access_token"] == nil {
		t.Fatalf("basic auth token: %d %v", st, m)
	}
	basicTok := m["access_token"].(string)
	st, m = token(url.Values{"grant_type": {"client_credentials"}, "client_id": {"sendgrid"}, "client_secret": {"0123456789abcdef-secret"}}, "", "")
	if st != 200 {
		t.Fatalf("form token: %d %v", st, m)
	}
	formTok := m["access_token"].(string)
	if st, m = token(url.Values{"grant_type": {"client_credentials"}}, "sendgrid", "wrong-secret-0000000"); st != 401 || m["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", st, m)
	}
	if st, m = token(url.Values{"grant_type": {"password"}}, "sendgrid", "0123456789abcdef-secret"); st != 400 || m["error"] != "unsupported_grant_type" {
		t.Fatalf("wrong grant: %d %v", st, m)
	}

	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	for name, tc := range map[string]struct {
		hdr  http.Header
		want int
	}{
		"basic-issued token": {bearer(basicTok), 200},
		"form-issued token":  {bearer(formTok), 200},
		"no token":           {nil, 401},
		"tampered token":     {bearer(basicTok[:len(basicTok)-2] + "AA"), 401},
		"other scheme":       {http.Header{"Authorization": {"Basic " + basicTok}}, 401},
		"foreign token":      {bearer(foreignToken(t)), 401},
	} {
		if st, _ := h.post("/webhook/sendgrid", []byte(twoEvents), tc.hdr); st != tc.want {
			t.Errorf("%s: status %d, want %d", name, st, tc.want)
		}
	}
	now = now.Add(time.Hour + time.Second)
	if st, resp := h.post("/webhook/sendgrid", []byte(twoEvents), bearer(basicTok)); st != 401 {
		t.Fatalf("expired token: %d %v", st, resp)
	}
	if n := len(h.stored()); n != 2 {
		t.Fatalf("stored %d records, want 2", n)
	}
}

func foreignToken(t *testing.T) string {
	o, err := NewOAuth("sendgrid", "another-secret-0123456789", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := o.Issue()
	return tok
}

// TestMethodsCombine: with signature and OAuth both configured, both must pass.
func TestMethodsCombine(t *testing.T) {
	signer := newTestSigner(t)
	sig, err := NewSignature([]string{signer.publicKey})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := NewOAuth("sendgrid", "0123456789abcdef-secret", time.Hour)
	tok, _ := o.Issue()
	h := newHarness(t, Config{Signature: sig, OAuth: o}, spool.Options{})
	body := []byte(twoEvents)
	signed := signer.sign(body, time.Now())
	both := signed.Clone()
	both.Set("Authorization", "Bearer "+tok)
	for name, tc := range map[string]struct {
		hdr  http.Header
		want int
	}{
		"signature only": {signed, 401},
		"bearer only":    {http.Header{"Authorization": {"Bearer " + tok}}, 401},
		"both":           {both, 200},
	} {
		if st, _ := h.post("/webhook/sendgrid", body, tc.hdr); st != tc.want {
			t.Errorf("%s: status %d, want %d", name, st, tc.want)
		}
	}
	recs := h.stored()
	if len(recs) != 1 || recs[0].Auth != "oauth+signature" {
		t.Fatalf("stored %+v", recs)
	}
	if _, ok := recs[0].Header["Authorization"]; ok {
		t.Fatal("bearer token stored in the spool")
	}
}

func TestNoAuthRefusedUnlessInsecure(t *testing.T) {
	if _, err := NewHandler(Config{}); err != ErrNoAuth {
		t.Fatalf("New without auth: %v, want ErrNoAuth", err)
	}
}

func TestConcurrentPostsAllStored(t *testing.T) {
	h := newHarness(t, Config{InsecureNoAuth: true}, spool.Options{})
	const n = 64
	errs := make(chan error, n)
	for i := range n {
		go func() {
			body := fmt.Sprintf(`[{"sg_event_id":"c%d"}]`, i)
			resp, err := http.Post(h.srv.URL+"/webhook/sendgrid", "application/json", strings.NewReader(body))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, r := range h.stored() {
		seen[string(r.Body)] = true
	}
	if len(seen) != n {
		t.Fatalf("stored %d distinct POSTs, want %d", len(seen), n)
	}
}

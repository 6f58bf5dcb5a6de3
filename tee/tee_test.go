package tee_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"

	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
	"github.com/sgload/sgload/tee"
	"github.com/sgload/sgload/webhook"
)

// signer signs like SendGrid, with the published test key of sendgrid-go's
// first signature vector.
type signer struct {
	key    *ecdsa.PrivateKey
	public string
}

func newSigner(t *testing.T) *signer {
	b, err := os.ReadFile("../testdata/signatures/sendgrid-signature-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Keys map[string]struct{ Value string } `json:"keys"`
	}
	json.Unmarshal(b, &v)
	der, _ := base64.StdEncoding.DecodeString(v.Keys["legacy_private_key_sec1_der_base64"].Value)
	k, err := x509.ParseECPrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return &signer{key: k, public: base64.StdEncoding.EncodeToString(pub)}
}

func (s *signer) sign(body []byte) http.Header {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h := sha256.Sum256(append([]byte(ts), body...))
	sig, _ := ecdsa.SignASN1(rand.Reader, s.key, h[:])
	return http.Header{
		eventwebhook.VerificationHTTPHeader: {base64.StdEncoding.EncodeToString(sig)},
		eventwebhook.TimestampHTTPHeader:    {ts},
		"Content-Type":                      {"application/json"},
	}
}

// downstream is another webhook consumer that checks SendGrid's signature.
type downstream struct {
	t      *testing.T
	pub    *ecdsa.PublicKey
	mu     sync.Mutex
	bodies [][]byte
	down   atomic.Bool
	hang   chan struct{} // when set, requests block until it is closed
	srv    *httptest.Server
}

func newDownstream(t *testing.T, s *signer) *downstream {
	pub, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(s.public)
	if err != nil {
		t.Fatal(err)
	}
	d := &downstream{t: t, pub: pub}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.hang != nil {
			<-d.hang
		}
		if d.down.Load() {
			w.WriteHeader(503)
			return
		}
		body, _ := io.ReadAll(r.Body)
		ok, err := eventwebhook.VerifySignature(d.pub, body, r.Header.Get(eventwebhook.VerificationHTTPHeader), r.Header.Get(eventwebhook.TimestampHTTPHeader))
		if err != nil || !ok {
			t.Errorf("downstream: signature does not verify (%v)", err)
			w.WriteHeader(401)
			return
		}
		d.mu.Lock()
		d.bodies = append(d.bodies, body)
		d.mu.Unlock()
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *downstream) received() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.bodies...)
}

// ingest is serve in-process over the spool at root: a real spool, the
// webhook with signature checks, and a tee to url. stop shuts it all down
// (it also runs at the end of the test).
func ingest(t *testing.T, s *signer, root, url string) (srv *httptest.Server, stop func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	sp, err := spool.OpenWriter(root, spool.Options{Node: "tee", MinFreeBytes: -1, SegmentBytes: 4 << 10, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tt, err := tee.New(sp.Dir(), url, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	tt.MaxBackoff, tt.Poll = 50*time.Millisecond, 50*time.Millisecond
	sig, err := webhook.NewSignature([]string{s.public})
	if err != nil {
		t.Fatal(err)
	}
	h, err := webhook.NewHandler(webhook.Config{Spool: sp, Signature: sig, Registry: reg, Accepted: func(spool.Ack) { tt.Notify() }})
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tt.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done; srv.Close(); sp.Close() }) }
	t.Cleanup(stop)
	return srv, stop
}

func post(t *testing.T, srv *httptest.Server, s *signer, body []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/webhook/sendgrid", bytes.NewReader(body))
	for k, v := range s.sign(body) {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ingest answered %d", resp.StatusCode)
	}
}

func bodyN(i int) []byte {
	return []byte(fmt.Sprintf("[{\"event\":\"open\",\"sg_event_id\":\"t%d\",\"x\":\"\\u003cb\\u003e\"},\r\n{\"event\":\"click\",\"n\":%d}\r\n]\r\n", i, i))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTeeForwardsBodiesByteForByte(t *testing.T) {
	s := newSigner(t)
	d := newDownstream(t, s)
	srv, _ := ingest(t, s, t.TempDir(), d.srv.URL+"/hook?token=abc")
	var sent [][]byte
	for i := range 40 { // several segments (4 KiB each)
		b := bodyN(i)
		sent = append(sent, b)
		post(t, srv, s, b)
	}
	waitFor(t, "all 40 bodies downstream", func() bool { return len(d.received()) >= 40 })
	got := d.received()
	if len(got) != 40 {
		t.Fatalf("downstream got %d bodies, want 40", len(got))
	}
	for i := range got {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("body %d differs:\n%q\n%q", i, got[i], sent[i])
		}
	}
}

func TestTeeCatchesUpAfterDowntime(t *testing.T) {
	s := newSigner(t)
	d := newDownstream(t, s)
	d.down.Store(true)
	srv, _ := ingest(t, s, t.TempDir(), d.srv.URL)
	for i := range 20 {
		post(t, srv, s, bodyN(i))
	}
	time.Sleep(200 * time.Millisecond) // several refused attempts
	if n := len(d.received()); n != 0 {
		t.Fatalf("%d bodies delivered while down", n)
	}
	d.down.Store(false)
	waitFor(t, "the backlog after the downstream came back", func() bool { return len(d.received()) == 20 })
	for i, b := range d.received() {
		if !bytes.Equal(b, bodyN(i)) {
			t.Fatalf("body %d out of order or changed", i)
		}
	}
}

// TestIngestNeverWaitsForTheTee: with the downstream hanging on every
// request, every POST is still accepted (the tee works from the spool, on
// its own goroutine).
func TestIngestNeverWaitsForTheTee(t *testing.T) {
	s := newSigner(t)
	d := newDownstream(t, s)
	d.hang = make(chan struct{})
	srv, _ := ingest(t, s, t.TempDir(), d.srv.URL)
	done := make(chan struct{})
	go func() {
		for i := range 30 {
			post(t, srv, s, bodyN(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("ingest blocked behind a hanging tee")
	}
	close(d.hang)
	waitFor(t, "delivery once the downstream answers", func() bool { return len(d.received()) == 30 })
}

// TestTeeStartsAtTheEndThenResumesAtItsCursor: a new tee passes on only
// what arrives after it is configured; once it has a cursor, a restart
// resumes there, so what arrived while it could not deliver still goes.
func TestTeeStartsAtTheEndThenResumesAtItsCursor(t *testing.T) {
	s := newSigner(t)
	d := newDownstream(t, s)
	root := t.TempDir()
	spooltest.Fill(t, root, [][]byte{[]byte(`{"event":"open","before":"the tee"}`)}, spooltest.Options{Node: "tee"})

	srv, stop := ingest(t, s, root, d.srv.URL)
	for i := range 3 {
		post(t, srv, s, bodyN(i))
	}
	waitFor(t, "the first 3 bodies", func() bool { return len(d.received()) == 3 })
	d.down.Store(true)
	for i := 3; i < 6; i++ {
		post(t, srv, s, bodyN(i))
	}
	stop()

	d.down.Store(false)
	ingest(t, s, root, d.srv.URL)
	waitFor(t, "the bodies that waited in the spool", func() bool { return len(d.received()) >= 6 })
	time.Sleep(100 * time.Millisecond) // room for a wrong resend to show
	got := d.received()
	if len(got) != 6 {
		t.Fatalf("downstream got %d bodies, want 6 (none from before the tee, none twice)", len(got))
	}
	for i, b := range got {
		if !bytes.Equal(b, bodyN(i)) {
			t.Fatalf("body %d is %q, want %q", i, b, bodyN(i))
		}
	}
}

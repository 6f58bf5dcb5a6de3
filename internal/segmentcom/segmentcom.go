// Package segmentcom is a Segment-compatible HTTP API for tests: it checks
// the write key, Segment's size limits, the Segment Spec's email events and
// the partner-source rules on every call, and records what it accepted.
package segmentcom

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// SpecEvents are the Segment Spec's email events and their String
// properties (segment.com/docs/connections/spec/email).
var SpecEvents = map[string][]string{
	"Email Bounced":        {"email_id", "email_subject", "campaign_id", "campaign_name"},
	"Email Delivered":      {"email_id", "email_subject", "campaign_id", "campaign_name"},
	"Email Link Clicked":   {"email_id", "email_subject", "campaign_id", "campaign_name", "link_id", "link_url"},
	"Email Marked as Spam": {"email_id", "email_subject", "campaign_id", "campaign_name"},
	"Email Opened":         {"email_id", "email_subject", "campaign_id", "campaign_name"},
	"Unsubscribed":         {"email_id", "email_subject", "campaign_id", "campaign_name", "list_id", "list_name"},
}

// Segment's size limits, as its own Go library (analytics-go, message.go)
// has them: maxBatchBytes = 500000 for a request body, maxMessageBytes =
// 32000 for one call. Its HTTP API docs say "500KB" and "32KB".
const (
	BatchLimit = 500_000
	CallLimit  = 32_000
)

// Call is one accepted track call.
type Call struct {
	MessageID string
	Event     string
	Raw       string
}

// Receiver is the fake API.
type Receiver struct {
	*httptest.Server
	t        testing.TB
	writeKey string
	// OtherEvent, when set, accepts event names outside the Spec with this prefix.
	OtherEvent string

	mu        sync.Mutex
	calls     []Call
	requests  []time.Time // accepted batches
	arrivals  []time.Time // every request with the write key, refused ones too (for the rate)
	fail      int         // answer 503 to this many requests first
	onRequest func(n int)
	maxBody   int // the largest request body seen
	maxCall   int // the largest call seen
}

// New starts a receiver accepting writeKey.
func New(t testing.TB, writeKey string) *Receiver {
	r := &Receiver{t: t, writeKey: writeKey}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// OnRequest sets a func run after each accepted request, with the count of
// requests so far (tests kill the sender from it); nil removes it. It takes
// the receiver's lock because the request goroutines read it.
func (r *Receiver) OnRequest(f func(n int)) {
	r.mu.Lock()
	r.onRequest = f
	r.mu.Unlock()
}

// FailNext answers 503 to the next n requests.
func (r *Receiver) FailNext(n int) {
	r.mu.Lock()
	r.fail = n
	r.mu.Unlock()
}

func (r *Receiver) errorf(format string, args ...any) {
	r.t.Errorf("segment receiver: "+format, args...)
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/batch" {
		r.errorf("%s %s: not the batch endpoint", req.Method, req.URL.Path)
		w.WriteHeader(404)
		return
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(r.writeKey+":"))
	if req.Header.Get("Authorization") != want {
		w.WriteHeader(401)
		return
	}
	r.mu.Lock()
	r.arrivals = append(r.arrivals, time.Now())
	if r.fail > 0 {
		r.fail--
		r.mu.Unlock()
		w.WriteHeader(503)
		return
	}
	r.mu.Unlock()
	if ct := req.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		r.errorf("Content-Type %q", ct)
	}
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.maxBody = max(r.maxBody, len(body))
	r.mu.Unlock()
	if len(body) > BatchLimit {
		r.errorf("batch of %d bytes, over Segment's %d", len(body), BatchLimit)
	}
	var b struct {
		Batch []json.RawMessage `json:"batch"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		r.errorf("body is not a batch: %v", err)
		w.WriteHeader(400)
		return
	}
	if len(b.Batch) == 0 || len(b.Batch) > 2500 {
		r.errorf("batch of %d calls", len(b.Batch))
	}
	var accepted []Call
	for _, raw := range b.Batch {
		if c, ok := r.check(raw); ok {
			accepted = append(accepted, c)
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, accepted...)
	r.requests = append(r.requests, time.Now())
	n := len(r.requests)
	hook := r.onRequest
	r.mu.Unlock()
	w.Write([]byte(`{"success":true}`))
	if hook != nil {
		hook(n)
	}
}

func (r *Receiver) check(raw json.RawMessage) (Call, bool) {
	r.mu.Lock()
	r.maxCall = max(r.maxCall, len(raw))
	r.mu.Unlock()
	if len(raw) > CallLimit {
		r.errorf("call of %d bytes, over Segment's %d", len(raw), CallLimit)
	}
	var c struct {
		Type        string         `json:"type"`
		Event       string         `json:"event"`
		UserID      string         `json:"userId"`
		AnonymousID string         `json:"anonymousId"`
		MessageID   string         `json:"messageId"`
		Timestamp   string         `json:"timestamp"`
		Context     map[string]any `json:"context"`
		Properties  map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		r.errorf("call is not JSON: %v", err)
		return Call{}, false
	}
	props, spec := SpecEvents[c.Event]
	switch {
	case c.Type != "track":
		r.errorf("type %q, want track", c.Type)
	case !spec && (r.OtherEvent == "" || !strings.HasPrefix(c.Event, r.OtherEvent)):
		r.errorf("event %q is not a Segment Spec email event", c.Event)
	case c.UserID == "" && c.AnonymousID == "":
		r.errorf("call without userId or anonymousId")
	case c.MessageID == "" || len(c.MessageID) >= 100:
		r.errorf("messageId %q", c.MessageID)
	}
	if _, err := time.Parse(time.RFC3339Nano, c.Timestamp); err != nil {
		r.errorf("timestamp %q is not ISO-8601", c.Timestamp)
	}
	integ, _ := c.Context["integration"].(map[string]any)
	if integ["name"] != "sendgrid" || integ["version"] != "1.0.0" {
		r.errorf("context.integration = %v", c.Context["integration"])
	}
	for _, p := range props {
		if v, ok := c.Properties[p]; ok {
			if _, isString := v.(string); !isString {
				r.errorf("property %s of %s is %T, the Spec says String", p, c.Event, v)
			}
		}
	}
	if c.Event == "Email Link Clicked" && c.Properties["link_url"] == nil {
		r.errorf("Email Link Clicked without link_url")
	}
	return Call{MessageID: c.MessageID, Event: c.Event, Raw: string(raw)}, true
}

// Calls returns the calls accepted so far.
func (r *Receiver) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Largest returns the largest request body and the largest call seen, in
// bytes.
func (r *Receiver) Largest() (body, call int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxBody, r.maxCall
}

// Requests is the number of batches accepted.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// MaxPerSecond is the most requests seen in any one-second window,
// retries of refused ones included.
func (r *Receiver) MaxPerSecond() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	best := 0
	for i := range r.arrivals {
		n := 0
		for j := i; j < len(r.arrivals) && r.arrivals[j].Sub(r.arrivals[i]) < time.Second; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}

// String describes the receiver for failure messages.
func (r *Receiver) String() string {
	return fmt.Sprintf("%d calls in %d requests", len(r.Calls()), r.Requests())
}

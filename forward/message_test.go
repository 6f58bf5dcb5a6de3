package forward

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool/spooltest"
)

// TestMessageIDFollowsTheDedupeRule: a re-post of the same events, however
// formatted, gets the same messageIds (Segment drops the copies); events
// that share an id across types, or differ only in their id, get their own.
func TestMessageIDFollowsTheDedupeRule(t *testing.T) {
	m := Mapping{OtherEvents: "SendGrid %s", Anonymous: true}
	var kr schema.KeyReader
	id := func(raw []byte) string {
		msg, skip, _ := m.message(&kr, raw, time.Unix(1767225600, 0))
		if msg == nil {
			t.Fatalf("skipped (%s): %s", skip, raw)
		}
		var call struct {
			MessageID string `json:"messageId"`
		}
		if err := json.Unmarshal(msg, &call); err != nil {
			t.Fatal(err)
		}
		return call.MessageID
	}
	samples := spooltest.Lines(t, "../testdata/events/sendgrid-samples.ndjson")
	seen := map[string]bool{}
	for _, s := range samples {
		var spaced bytes.Buffer
		json.Indent(&spaced, s, "", "  ")
		compact := id(s)
		if got := id(spaced.Bytes()); got != compact {
			t.Errorf("messageId %s compact, %s with spaces: %s", compact, got, s)
		}
		if seen[compact] {
			t.Errorf("two sample events (one id, different types) share messageId %s", compact)
		}
		seen[compact] = true
	}
	a := id([]byte(`{"email":"a@x.com","timestamp":1767225600,"event":"open","sg_event_id":"TWIN-A"}`))
	b := id([]byte(`{"email":"a@x.com","timestamp":1767225600,"event":"open","sg_event_id":"TWIN-B"}`))
	if a == b {
		t.Error("twin events share a messageId")
	}
	c := id([]byte(`{"email":"u@x.com","timestamp":1,"event":"unsubscribe"}`))
	d := id([]byte(`{"event":"unsubscribe", "timestamp":1, "email":"u@x.com"}`))
	if c != d {
		t.Error("an event without an id, keys reordered, got another messageId")
	}
}

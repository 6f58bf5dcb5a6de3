package forward

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/valyala/fastjson"
	"github.com/zeebo/xxh3"

	"github.com/sgload/sgload/schema"
)

// Integration is what every call names as its source (context.integration),
// as Segment's partner rules ask.
var Integration = map[string]string{"name": "sendgrid", "version": "1.0.0"}

// Mapping says how SendGrid events become Segment track calls.
type Mapping struct {
	// UserIDArg is the custom arg (unique arg) holding your user id.
	UserIDArg string
	// UserIDs, when set, gives the userId of events without that arg, by
	// their email address (a file, the synced contacts' external_id).
	UserIDs UserIDs
	// Anonymous sends events without a userId with an anonymousId derived
	// from the email address, instead of skipping them.
	Anonymous bool
	// OtherEvents, when set, names events with no Segment Spec name ("%s" is
	// replaced by the SendGrid type); empty skips them.
	OtherEvents string
}

// Skip reasons, counted in the summary and metrics.
const (
	SkipNoSpecEvent = "no_spec_event"
	SkipNoUserID    = "no_user_id"
	SkipNotJSON     = "not_json"
	SkipTooLarge    = "too_large"
)

// Where a call's userId came from, counted in the summary.
const (
	SourceCustomArg = "custom_arg"
	SourceMapping   = "mapping"
	SourceAnonymous = "anonymous"
)

// Segment's limits: "32KB per call" and "500KB per batch" in its HTTP API
// docs, which its own Go library (analytics-go, message.go) spells as
// maxMessageBytes = 32000 and maxBatchBytes = 500000. sgload keeps the
// smaller, decimal reading.
const (
	MaxMessageBytes = 32_000
	MaxBatchBytes   = 500_000
)

// track is a Segment track call.
type track struct {
	Type        string         `json:"type"`
	Event       string         `json:"event"`
	UserID      string         `json:"userId,omitempty"`
	AnonymousID string         `json:"anonymousId,omitempty"`
	MessageID   string         `json:"messageId"`
	Timestamp   string         `json:"timestamp,omitempty"`
	Context     map[string]any `json:"context"`
	Properties  map[string]any `json:"properties"`
}

// message turns one raw SendGrid event into a track call's JSON, or says
// why it is skipped; source says where its userId came from.
// received is when sgload got the event, the timestamp of events without one.
func (m Mapping) message(kr *schema.KeyReader, raw []byte, received time.Time) (msg []byte, skip, source string) {
	v, key, err := kr.Parse(raw)
	if err != nil {
		return nil, SkipNotJSON, ""
	}
	str := func(k string) string {
		x := v.Get(k)
		if x == nil {
			return ""
		}
		if x.Type() == fastjson.TypeString {
			return string(x.GetStringBytes())
		}
		if x.Type() == fastjson.TypeNull {
			return ""
		}
		return x.String()
	}
	typ := key.Table
	name, ok := schema.SpecEvents[typ]
	if !ok {
		if m.OtherEvents == "" {
			return nil, SkipNoSpecEvent, ""
		}
		name = fmtName(m.OtherEvents, typ)
	}
	t := track{Type: "track", Event: name, Context: map[string]any{"integration": Integration}, Properties: map[string]any{}}
	email := str("email")
	source = SourceCustomArg
	if m.UserIDArg != "" {
		t.UserID = str(m.UserIDArg)
	}
	if t.UserID == "" && m.UserIDs != nil && email != "" {
		t.UserID, _ = m.UserIDs.UserID(email)
		source = SourceMapping
	}
	if t.UserID == "" {
		if !m.Anonymous || email == "" {
			return nil, SkipNoUserID, ""
		}
		h := xxh3.HashString128(email).Bytes()
		t.AnonymousID = "sg-email-" + hex.EncodeToString(h[:])
		source = SourceAnonymous
	}
	// The dedupe key: a resend of the same event, or a duplicate SendGrid
	// delivered, gets the same messageId, so Segment drops it.
	t.MessageID = "sg-" + hex.EncodeToString(key.Key[:]) // 35 characters, under Segment's 100
	if ts := v.Get("timestamp"); ts != nil {
		if sec, err := ts.Int64(); err == nil && sec > 0 {
			if sec > 1e11 { // milliseconds
				t.Timestamp = time.UnixMilli(sec).UTC().Format(time.RFC3339Nano)
			} else {
				t.Timestamp = time.Unix(sec, 0).UTC().Format(time.RFC3339)
			}
		} else if s, err := strconv.ParseInt(str("timestamp"), 10, 64); err == nil && s > 0 {
			t.Timestamp = time.Unix(s, 0).UTC().Format(time.RFC3339)
		}
	}
	if t.Timestamp == "" {
		t.Timestamp = received.UTC().Format(time.RFC3339Nano)
	}
	if email != "" {
		t.Context["traits"] = map[string]any{"email": email}
	}
	// The ip of delivery events is SendGrid's sending IP, not the recipient's.
	switch typ {
	case "open", "click", "spamreport", "unsubscribe", "group_unsubscribe":
		if ip := str("ip"); ip != "" {
			t.Context["ip"] = ip
		}
		if ua := str("useragent"); ua != "" {
			t.Context["userAgent"] = ua
		}
	}
	props := t.Properties
	set := func(k, val string) {
		if val != "" {
			props[k] = val
		}
	}
	msgID := str("sg_message_id")
	if msgID == "" {
		msgID = str("smtp-id")
	}
	set("email_id", msgID)
	set("campaign_id", firstOf(str("marketing_campaign_id"), str("singlesend_id")))
	set("campaign_name", firstOf(str("marketing_campaign_name"), str("singlesend_name")))
	set("sg_event_id", str("sg_event_id"))
	set("sendgrid_event", typ)
	switch typ {
	case "click":
		set("link_url", str("url"))
		if off := v.Get("url_offset"); off != nil {
			set("link_id", string(off.GetStringBytes("type"))+":"+strconv.Itoa(off.GetInt("index")))
		}
	case "group_unsubscribe":
		set("list_id", str("asm_group_id"))
	case "bounce":
		set("bounce_type", str("type"))
		set("bounce_classification", str("bounce_classification"))
		set("reason", str("reason"))
		set("status", str("status"))
	case "open":
		if mo := v.Get("sg_machine_open"); mo != nil && mo.Type() == fastjson.TypeTrue {
			props["machine_open"] = true
		}
	}
	if cat := v.Get("category"); cat != nil && cat.Type() != fastjson.TypeNull {
		props["category"] = json.RawMessage(cat.String())
	}
	// Custom args (unique args): every top-level key SendGrid does not
	// define, as sent. A custom arg named like a property set above does
	// not replace it.
	obj, _ := v.Object()
	obj.Visit(func(k []byte, val *fastjson.Value) {
		key := string(k)
		if schema.IsEventField(key) {
			return
		}
		if _, taken := props[key]; !taken {
			props[key] = json.RawMessage(val.MarshalTo(nil))
		}
	})
	b, err := json.Marshal(t)
	if err != nil {
		return nil, SkipNotJSON, ""
	}
	if len(b) > MaxMessageBytes {
		return nil, SkipTooLarge, ""
	}
	return b, "", source
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func fmtName(tmpl, typ string) string {
	out := []byte{}
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] == '%' && i+1 < len(tmpl) && tmpl[i+1] == 's' {
			out = append(out, typ...)
			i++
			continue
		}
		out = append(out, tmpl[i])
	}
	return string(out)
}

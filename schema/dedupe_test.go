package schema

import (
	"testing"

	"github.com/sgload/sgload/spool/spooltest"
)

// TestDedupeRule pins the one rule: same type and same id, or (without an
// id) the same content whatever its key order and whitespace.
func TestDedupeRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		same bool
	}{
		{"twins: same content, two ids", `{"email":"a@x.com","timestamp":1767225600,"event":"open","sg_event_id":"TWIN-A","sg_message_id":"m1"}`,
			`{"email":"a@x.com","timestamp":1767225600,"event":"open","sg_event_id":"TWIN-B","sg_message_id":"m1"}`, false},
		{"same id, two types", `{"event":"open","sg_event_id":"sendgrid_internal_event_id"}`,
			`{"event":"click","sg_event_id":"sendgrid_internal_event_id"}`, false},
		{"same id and type, other content (a retry)", `{"event":"open","sg_event_id":"X","ip":"1.1.1.1"}`,
			`{"event":"open","sg_event_id":"X","ip":"2.2.2.2"}`, true},
		{"type normalised like the table", `{"event":"Open","sg_event_id":"X"}`, `{"event":"open","sg_event_id":"X"}`, true},
		{"id with spaces around the colon", `{"event":"open","sg_event_id":"X"}`, `{ "event" : "open" , "sg_event_id" : "X" }`, true},
		{"id written with an escape", `{"event":"open","sg_event_id":"X/Y"}`, `{"event":"open","sg_event_id":"X\/Y"}`, true},
		{"no id, keys reordered", `{"email":"a@x.com","event":"unsubscribe","timestamp":1,"asm_group_id":7}`,
			`{"timestamp":1,"asm_group_id":7,"event":"unsubscribe","email":"a@x.com"}`, true},
		{"no id, nested keys reordered and spaced", `{"event":"x","o":{"a":1,"b":[1,{"c":2,"d":3}]}}`,
			"{\"o\" : {\"b\":[1, {\"d\":3,\"c\":2}],\r\n \"a\":1},\"event\":\"x\"}", true},
		{"no id, string escapes", `{"event":"x","s":"<a>\u00e9"}`, `{"event":"x","s":"\u003ca\u003eé"}`, true},
		{"no id, one field differs", `{"event":"unsubscribe","email":"a@x.com","timestamp":1}`,
			`{"event":"unsubscribe","email":"a@x.com","timestamp":2}`, false},
		{"no id vs an id", `{"event":"open","email":"a"}`, `{"event":"open","email":"a","sg_event_id":"X"}`, false},
		{"empty id is no id", `{"event":"open","sg_event_id":"","email":"a"}`, `{"email":"a","sg_event_id":"","event":"open"}`, true},
		{"empty id: content decides", `{"event":"open","sg_event_id":"","email":"a"}`, `{"event":"open","sg_event_id":"","email":"b"}`, false},
		{"numeric id as its text", `{"event":"open","sg_event_id":12}`, `{"event":"open","sg_event_id":"12"}`, true},
		{"first of two event members counts", `{"event":"open","event":"click","sg_event_id":"X"}`, `{"event":"open","sg_event_id":"X"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var kr KeyReader
			a, err := kr.Key([]byte(tc.a))
			if err != nil {
				t.Fatal(err)
			}
			a.ID = append([]byte(nil), a.ID...) // valid until the next call
			b, err := kr.Key([]byte(tc.b))
			if err != nil {
				t.Fatal(err)
			}
			if (a.Key == b.Key) != tc.same {
				t.Errorf("same key = %v, want %v", a.Key == b.Key, tc.same)
			}
			// The mapper (the rows' _fingerprint) and the key reader agree.
			m := NewEventMapper()
			e, err := m.Parse([]byte(tc.a))
			if err != nil {
				t.Fatal(err)
			}
			if e.Key != a.Key || e.Table != a.Table || string(e.ID) != string(a.ID) {
				t.Errorf("mapper says %s/%q/%x, key reader %s/%q/%x", e.Table, e.ID, e.Key, a.Table, a.ID, a.Key)
			}
		})
	}
}

func TestEventTable(t *testing.T) {
	for raw, want := range map[string]string{
		`{"event":"open"}`: "open", `{"event":null}`: "unknown", `{}`: "unknown", `{"event":"Group Unsubscribe"}`: "group_unsubscribe",
		`{"event":"open","event":"click"}`: "open", `{"event":7}`: "7",
	} {
		var kr KeyReader
		k, err := kr.Key([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		if k.Table != want {
			t.Errorf("%s: table %q, want %q", raw, k.Table, want)
		}
	}
}

func FuzzDedupeKey(f *testing.F) {
	f.Add([]byte(`{"event":"open","sg_event_id":"X","a":[1,{"b":2}]}`))
	f.Add([]byte(`{"email":"a","timestamp":1,"event":"unsubscribe"}`))
	f.Add([]byte(`{"event":"open","sg_event_id":"id1","timestamp":1700000000,"x":{"a":[1,2.5,null]}}`))
	f.Add([]byte(`{"event":"Group Unsubscribe","sg_event_id":"a","timestamp":1700000000123,"event":"x","sg_event_id":"b"}`))
	f.Add([]byte(`{"ev\u0065nt":"click","event":"open","sg_event_id":"i","timestamp":"1700000000"}`))
	f.Add([]byte(`{"event":null,"sg_event_id":"","timestamp":0}`))
	f.Add([]byte(`{"event":"open","sg_event_id":"i\u0031","timestamp":-5}`))
	f.Add([]byte(`{"email":"a\u0040b","event":"open","sg_event_id":"i","email":"c"}`))
	f.Add([]byte(`{"email":"","event":"open","sg_event_id":"i"}`))
	f.Add([]byte(`{"email":7,"event":"open","sg_event_id":"i"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var kr KeyReader
		k, err := kr.Key(raw)
		// The quick path gives the parser's answer, or declines.
		if quick, ok := kr.quickKey(raw); ok {
			var slow KeyReader
			_, want, err := slow.Parse(raw)
			if err != nil {
				t.Fatalf("quick key read %q, the parser did not: %v", raw, err)
			}
			if quick.Table != want.Table || quick.Time != want.Time || string(quick.ID) != string(want.ID) || quick.Key != want.Key ||
				string(quick.Email) != string(want.Email) {
				t.Fatalf("%q: quick key %+v, parsed %+v", raw, quick, want)
			}
		}
		if err != nil {
			return
		}
		m := NewEventMapper()
		e, err := m.Parse(raw)
		if err != nil {
			t.Fatalf("key reader read it, mapper did not: %v", err)
		}
		if e.Key != k.Key || e.Table != k.Table || e.Time != k.Time || string(e.ID) != string(k.ID) {
			t.Fatalf("mapper and key reader disagree on %q", raw)
		}
		if k.ID != nil {
			return
		}
		// The fingerprint does not depend on formatting: the canonical form
		// of the event has the same fingerprint as the event.
		v, _, _ := kr.Parse(raw)
		var c canon
		canonical := c.append(nil, v)
		k2, err := kr.Key(canonical)
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", canonical, err)
		}
		if k2.Key != k.Key {
			t.Fatalf("canonical form %q has another key than %q", canonical, raw)
		}
	})
}

// TestQuickKeyReadsSendGridEvents: every sample event with an id takes the
// quick path (the speed of flush's first pass rests on it); the rest (no
// sg_event_id: their key is the fingerprint of the parsed event) do not.
func TestQuickKeyReadsSendGridEvents(t *testing.T) {
	var kr KeyReader
	quick := 0
	for _, line := range spooltest.Lines(t, "../testdata/events/sample-2000.ndjson") {
		k, ok := kr.quickKey(line)
		_, want, err := kr.Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (want.ID != nil) {
			t.Errorf("quick path %v for an event with id %q: %s", ok, want.ID, line)
		}
		if ok {
			quick++
			if k.Key != want.Key || k.Table != want.Table || k.Time != want.Time || string(k.Email) != string(want.Email) {
				t.Errorf("quick key %+v, parsed %+v: %s", k, want, line)
			}
		}
	}
	if quick < 1000 {
		t.Errorf("only %d sample events took the quick path", quick)
	}
	t.Logf("%d events took the quick path", quick)
}

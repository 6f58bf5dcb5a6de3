package jsonarray

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestObjects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		ok   bool
	}{
		{"sendgrid framing", "[{\"a\":1},\r\n{\"b\":[1,{\"c\":\"}\"}]}\r\n]\r\n", []string{`{"a":1}`, `{"b":[1,{"c":"}"}]}`}, true},
		{"pretty", "[\n  {\n    \"a\": \"x\\\"y\"\n  }\n]", []string{"{\n    \"a\": \"x\\\"y\"\n  }"}, true},
		{"empty", "[]", nil, true},
		{"strings", `["a"]`, nil, false},
		{"object", `{"a":1}`, nil, false},
		{"nested array", `[[{}]]`, nil, false},
		{"number", `[{},1]`, []string{`{}`}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			ok := Objects([]byte(tc.in), func(o []byte) bool { got = append(got, string(o)); return true })
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if tc.ok {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("objects (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// FuzzObjects checks the walk against encoding/json on valid input: the
// same count, and each object's bytes are exactly the element's bytes.
func FuzzObjects(f *testing.F) {
	for _, s := range []string{"[{\"a\":1},\r\n{\"b\":2}]", `[]`, `[{"a":"\\\""}]`, `[{"a":[{"b":"}"}]}]`, `[1]`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		var elems []json.RawMessage
		isArray := json.Unmarshal(b, &elems) == nil
		allObjects := isArray
		for _, e := range elems {
			if len(bytes.TrimSpace(e)) == 0 || bytes.TrimSpace(e)[0] != '{' {
				allObjects = false
			}
		}
		var got [][]byte
		ok := Objects(b, func(o []byte) bool { got = append(got, o); return true })
		n, cok := CountObjects(b)
		if ok != allObjects || cok != allObjects {
			t.Fatalf("%q: ok %v/%v, want %v", b, ok, cok, allObjects)
		}
		if !allObjects {
			return
		}
		if len(got) != len(elems) || n != len(elems) {
			t.Fatalf("%q: %d objects (count %d), want %d", b, len(got), n, len(elems))
		}
		for i := range got {
			if !bytes.Equal(got[i], bytes.TrimSpace(elems[i])) {
				t.Fatalf("%q: object %d = %q, want %q", b, i, got[i], elems[i])
			}
		}
	})
}

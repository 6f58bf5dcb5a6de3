package jsonarray

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

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
		if d := Depth(b); d != jsonDepth(t, b) {
			t.Fatalf("%q: Depth %d, encoding/json says %d", b, d, jsonDepth(t, b))
		}
		var got [][]byte
		ok := Objects(b, func(o []byte) bool { got = append(got, o); return true })
		n, depth, cok := CountObjects(b)
		if ok != allObjects || cok != allObjects {
			t.Fatalf("%q: ok %v/%v, want %v", b, ok, cok, allObjects)
		}
		if !allObjects {
			return
		}
		if len(got) != len(elems) || n != len(elems) {
			t.Fatalf("%q: %d objects (count %d), want %d", b, len(got), n, len(elems))
		}
		deepest := 0
		for i := range got {
			if !bytes.Equal(got[i], bytes.TrimSpace(elems[i])) {
				t.Fatalf("%q: object %d = %q, want %q", b, i, got[i], elems[i])
			}
			deepest = max(deepest, Depth(got[i]))
		}
		if depth != deepest {
			t.Fatalf("%q: CountObjects depth %d, deepest element %d", b, depth, deepest)
		}
	})
}

// jsonDepth is the nesting depth of valid JSON by encoding/json's tokens.
func jsonDepth(t *testing.T, b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

func TestDepthAndCheckEvent(t *testing.T) {
	nest := func(n int) []byte {
		return []byte(strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n))
	}
	if got := Depth(nest(MaxDepth)); got != MaxDepth {
		t.Fatalf("Depth = %d, want %d", got, MaxDepth)
	}
	if err := CheckEvent(nest(MaxDepth)); err != nil {
		t.Fatalf("event at the limit: %v", err)
	}
	// Flush's parser reads every event within the limit.
	var p fastjson.Parser
	if _, err := p.ParseBytes(nest(MaxDepth)); err != nil {
		t.Fatalf("fastjson cannot parse an event at MaxDepth: %v", err)
	}
	if err := CheckEvent(nest(MaxDepth + 1)); err != ErrTooDeep {
		t.Fatalf("event over the limit: %v", err)
	}
	if err := CheckEvent([]byte("{\"a\":\"\xff\"}")); err != ErrNotUTF8 {
		t.Fatalf("invalid UTF-8: %v", err)
	}
	body := append(append([]byte("["), nest(3)...), ',', '{', '}', ']')
	if n, depth, ok := CountObjects(body); n != 2 || depth != 3 || !ok {
		t.Fatalf("CountObjects = %d, %d, %v", n, depth, ok)
	}
}

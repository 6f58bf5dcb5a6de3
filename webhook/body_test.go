package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/sgload/sgload/internal/jsonarray"
)

func TestParseBody(t *testing.T) {
	tests := []struct {
		name string
		body string
		n    int
		err  error
	}{
		{"sendgrid framing", "[{\"event\":\"open\"},\r\n{\"event\":\"click\",\"x\":[1,{\"y\":\"]\"}]}\r\n]\r\n", 2, nil},
		{"empty array", "[]", 0, nil},
		{"empty array with spaces", " \r\n[ ]\n", 0, nil},
		{"escaped quotes", `[{"a":"\"{[","b":"\\"},{"c":"\\\""}]`, 2, nil},
		{"nested arrays inside", `[{"category":["a","b"],"url_offset":{"index":0}}]`, 1, nil},
		{"single object", `{"event":"open"}`, 0, ErrNotArrayOfObjects},
		{"array of strings", `["open"]`, 0, ErrNotArrayOfObjects},
		{"array of numbers", `[1,2]`, 0, ErrNotArrayOfObjects},
		{"mixed", `[{"a":1},null]`, 0, ErrNotArrayOfObjects},
		{"nested array element", `[[{"a":1}]]`, 0, ErrNotArrayOfObjects},
		{"bare string", `"x"`, 0, ErrNotArrayOfObjects},
		{"number", `12`, 0, ErrNotArrayOfObjects},
		{"not json", `event=open`, 0, ErrNotJSON},
		{"truncated", `[{"a":1}`, 0, ErrNotJSON},
		{"trailing garbage", `[{"a":1}] x`, 0, ErrNotJSON},
		{"control char in string", "[{\"a\":\"\x01\"}]", 0, ErrNotJSON},
		{"NaN", `[{"a":NaN}]`, 0, ErrNotJSON},
		{"empty", ``, 0, ErrNotJSON},
		{"byte order mark", "\ufeff[]", 0, ErrNotJSON},
		{"invalid UTF-8 in a string", "[{\"email\":\"a\xffb\"}]", 0, ErrNotUTF8},
		{"lone surrogate escape (valid JSON, kept as written)", `[{"email":"a\ud800b"}]`, 1, nil},
		{"at the depth limit", "[" + nested(jsonarray.MaxDepth) + "]", 1, nil},
		{"over the depth limit", "[{}," + nested(jsonarray.MaxDepth+1) + "]", 0, ErrTooDeep},
		{"far over the depth limit", "[" + nested(9000) + "]", 0, ErrTooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseBody([]byte(tc.body))
			if !errors.Is(err, tc.err) || n != tc.n {
				t.Errorf("ParseBody(%q) = %d, %v; want %d, %v", tc.body, n, err, tc.n, tc.err)
			}
		})
	}
}

// nested is an event n levels deep.
func nested(n int) string {
	return strings.Repeat(`{"a":`, n-1) + `[]` + strings.Repeat("}", n-1)
}

// FuzzParseBody checks the fast parser against encoding/json, which is slow
// but the reference: same verdict on validity, same count of objects.
func FuzzParseBody(f *testing.F) {
	for _, s := range []string{
		"[{\"event\":\"open\"},\r\n{\"event\":\"click\"}\r\n]\r\n", "[]", `[{"a":"\\\""}]`,
		`{"a":1}`, `[1]`, `[{"a":[{"b":"}"}]}]`, `[{"a":"\u0022"}]`, "[{}", "x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParseBody(body)
		if !json.Valid(body) {
			if !errors.Is(err, ErrNotJSON) {
				t.Fatalf("invalid JSON %q accepted: %d, %v", body, n, err)
			}
			return
		}
		if !utf8.Valid(body) {
			if !errors.Is(err, ErrNotUTF8) {
				t.Fatalf("invalid UTF-8 %q accepted: %d, %v", body, n, err)
			}
			return
		}
		var elems []json.RawMessage
		isArray := json.Unmarshal(body, &elems) == nil
		allObjects := isArray
		for _, e := range elems {
			var m map[string]json.RawMessage
			if json.Unmarshal(e, &m) != nil || m == nil {
				allObjects = false
			}
		}
		deep := false
		for _, e := range elems {
			deep = deep || jsonarray.Depth(e) > jsonarray.MaxDepth
		}
		switch {
		case allObjects && deep:
			if !errors.Is(err, ErrTooDeep) {
				t.Fatalf("%q: got %d, %v; want ErrTooDeep", body, n, err)
			}
		case allObjects && (err != nil || n != len(elems)):
			t.Fatalf("%q: got %d, %v; want %d objects", body, n, err, len(elems))
		case !allObjects && !errors.Is(err, ErrNotArrayOfObjects):
			t.Fatalf("%q: got %d, %v; want ErrNotArrayOfObjects", body, n, err)
		}
	})
}

// realisticBody frames testdata events the way SendGrid does, up to ~768 KB.
func realisticBody(b *testing.B) []byte {
	b.Helper()
	data, err := os.ReadFile("../testdata/events/sample-2000.ndjson")
	if err != nil {
		b.Fatal(err)
	}
	var body bytes.Buffer
	body.WriteString("[")
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if body.Len()+len(line) > 768*1024 {
			break
		}
		if i > 0 {
			body.WriteString(",\r\n")
		}
		body.Write(line)
	}
	body.WriteString("\r\n]\r\n")
	return body.Bytes()
}

// The body parser candidates on a realistic 768 KB batch: BENCHMARKS.md,
// "Body parser", records the results and the choice.
func BenchmarkBodyParsers(b *testing.B) {
	body := realisticBody(b)
	b.Run("encoding-json-Valid", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if !json.Valid(body) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("encoding-json-RawMessages", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var v []json.RawMessage
			if err := json.Unmarshal(body, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fastjson-Validate", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if err := fastjson.ValidateBytes(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fastjson-Parse-lenient", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var p fastjson.Parser
		for b.Loop() {
			if _, err := p.ParseBytes(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseBody-goccy-Valid-plus-count", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := ParseBody(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package jsonarray

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fastjson"
)

func TestMembers(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1)
	tests := []struct {
		name string
		in   string
		want []string // key=value
		ok   bool
	}{
		{"event", `{"event":"open","timestamp":1700000000,"category":["a","b"],"x":{"y":[1,{}]}}`,
			[]string{`event="open"`, `timestamp=1700000000`, `category=["a","b"]`, `x={"y":[1,{}]}`}, true},
		{"spaces", " { \"a\" :\t-0.5e+3 ,\r\n\"b\": null , \"c\":true,\"d\":false } \n", []string{`a=-0.5e+3`, `b=null`, `c=true`, `d=false`}, true},
		{"escapes kept", `{"a\"b":"c\\"}`, []string{`a\"b="c\\"`}, true},
		{"empty", `{}`, nil, true},
		{"empty containers", `{"a":[],"b":{},"c":[{},[]]}`, []string{`a=[]`, `b={}`, `c=[{},[]]`}, true},
		{"deepest allowed", `{"a":` + deep + `}`, []string{`a=` + deep}, true},
		{"too deep", `{"a":[` + deep + `]}`, nil, false},
		{"array", `[{}]`, nil, false},
		{"leading zero", `{"a":01}`, nil, false},
		{"bare minus", `{"a":-}`, nil, false},
		{"fraction without digits", `{"a":1.}`, nil, false},
		{"exponent without digits", `{"a":1e}`, nil, false},
		{"nan", `{"a":nan}`, nil, false},
		{"inf", `{"a":-Inf}`, nil, false},
		{"number run", `{"a":1-2}`, nil, false},
		{"trailing comma", `{"a":1,}`, nil, false},
		{"trailing comma in array", `{"a":[1,]}`, nil, false},
		{"missing colon", `{"a" 1}`, nil, false},
		{"unclosed string", `{"a":"b\"}`, nil, false},
		{"unclosed object", `{"a":{"b":1}`, nil, false},
		{"mismatched", `{"a":[1}`, nil, false},
		{"tail", `{"a":1} x`, nil, false},
		{"two objects", `{}{}`, nil, false},
		{"key not a string", `{a:1}`, nil, false},
		{"bad literal", `{"a":tru}`, nil, false},
		{"vertical tab", "{\"a\":\v1}", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			ok := Members([]byte(tc.in), func(k, v []byte) { got = append(got, string(k)+"="+string(v)) })
			if ok != tc.ok {
				t.Fatalf("Members(%q) = %v, want %v", tc.in, ok, tc.ok)
			}
			if ok {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("members (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// FuzzMembers holds Members to its promise: what it accepts, fastjson
// parses as an object with the same members, and it nests no deeper than
// MaxDepth.
func FuzzMembers(f *testing.F) {
	f.Add([]byte(`{"event":"open","sg_event_id":"X","a":[1,{"b":2.5e-3}],"c":null,"d":true}`))
	f.Add([]byte(`{"a\"b":"c\\d","e":[[[]]],"f":{}}`))
	f.Add([]byte(` {"timestamp":-0,"x":"\u00e9"} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		type member struct{ key, value string }
		var got []member
		if !Members(b, func(k, v []byte) { got = append(got, member{string(k), string(v)}) }) {
			return
		}
		var p fastjson.Parser
		v, err := p.ParseBytes(b)
		if err != nil {
			t.Fatalf("Members accepted %q, fastjson did not: %v", b, err)
		}
		o, err := v.Object()
		if err != nil {
			t.Fatalf("Members accepted %q, which is not an object for fastjson", b)
		}
		var want []member
		o.Visit(func(k []byte, v *fastjson.Value) { want = append(want, member{string(k), v.String()}) })
		if len(got) != len(want) {
			t.Fatalf("%q: %d members, fastjson %d", b, len(got), len(want))
		}
		for i := range got {
			if !strings.Contains(got[i].key, `\`) && got[i].key != want[i].key {
				t.Fatalf("%q: member %d is %q, fastjson %q", b, i, got[i].key, want[i].key)
			}
			// The same value: fastjson re-encodes it, so compare what it
			// makes of Members' bytes.
			var q fastjson.Parser
			w, err := q.Parse(got[i].value)
			if err != nil || w.String() != want[i].value {
				t.Fatalf("%q: member %d's value %q is not fastjson's %q (%v)", b, i, got[i].value, want[i].value, err)
			}
		}
		if d := Depth(b); d > MaxDepth {
			t.Fatalf("%q: Members accepted depth %d", b, d)
		}
	})
}

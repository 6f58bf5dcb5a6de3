// Package jsonarray walks JSON without decoding it: the top level of an
// array of objects (counting the objects, for the webhook, per POST; handing
// out each object's exact bytes, for flush, per event), and the nesting
// depth of a value. It relies on its input being valid JSON, which the
// webhook checks before anything reaches the spool, so the walk only tracks
// nesting and skips strings. Members, which reads one object's top-level
// members, checks the grammar itself, as its callers rely on it to agree
// with a parser.
//
// It also holds the rules beyond JSON syntax that serve and flush share
// (CheckEvent), so that serve refuses at once what flush could not load.
package jsonarray

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays an event may have,
// the event object itself being depth 1. SendGrid's events nest three
// levels at most; flush's parser (fastjson) stops at 300 levels, counting
// the scalars inside the innermost container, so every event within
// MaxDepth parses.
const MaxDepth = 256

// Reasons an event is refused (by serve, with the whole POST) or
// quarantined (by flush, reading a spool written before the rule).
var (
	ErrTooDeep = fmt.Errorf("event nests objects and arrays deeper than %d levels", MaxDepth)
	// ErrNotUTF8: JSON allows no other encoding, and a Parquet string column
	// holding such bytes cannot be read (DuckDB refuses the whole file).
	ErrNotUTF8 = errors.New("body holds bytes that are not UTF-8")
)

// CheckEvent applies the rules beyond syntax to one event (valid JSON):
// UTF-8 throughout and at most MaxDepth levels.
func CheckEvent(obj []byte) error {
	if !utf8.Valid(obj) {
		return ErrNotUTF8
	}
	if Depth(obj) > MaxDepth {
		return ErrTooDeep
	}
	return nil
}

// CountObjects returns the number of elements of the top-level array in b,
// the deepest nesting of any of them (an object alone is 1), and whether b
// is an array whose elements are all objects.
func CountObjects(b []byte) (n, depth int, ok bool) {
	ok = walk(b, func([]byte) bool { n++; return true }, &depth)
	if !ok {
		return 0, 0, false
	}
	return n, depth, true
}

// Objects calls fn with the exact bytes of each object in the top-level
// array b, in order, until fn returns false. It reports false when b is not
// an array of objects.
func Objects(b []byte, fn func(obj []byte) bool) bool {
	var depth int
	return walk(b, fn, &depth)
}

// Depth is the nesting depth of the JSON value b: 0 for a scalar, 1 for an
// object or array holding only scalars, and so on.
func Depth(b []byte) int {
	depth, deepest := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i)
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// walk calls fn on each object of the array b; *deepest gets the deepest
// nesting inside an element (the element being 1).
func walk(b []byte, fn func([]byte) bool, deepest *int) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	depth, start := 0, 0
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			if depth == 1 {
				return false // a string element
			}
			i = stringEnd(b, i)
		case '{', '[':
			if depth == 1 {
				if c != '{' {
					return false
				}
				start = i
			}
			depth++
			*deepest = max(*deepest, depth-1)
		case '}', ']':
			depth--
			if depth == 1 && !fn(b[start:i+1]) {
				return true
			}
		case ',', ':', ' ', '\t', '\r', '\n':
		default: // a number, true, false or null
			if depth == 1 {
				return false
			}
		}
	}
	return depth == 0
}

// stringEnd returns the index of the quote that closes the string opening at
// b[i], or the last index of b when none does.
func stringEnd(b []byte, i int) int {
	if e, ok := closeQuote(b, i); ok {
		return e
	}
	return len(b) - 1
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

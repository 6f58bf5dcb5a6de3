// Package jsonarray walks the top level of a JSON array of objects without
// decoding it: counting the objects (the webhook, per POST) and handing out
// each object's exact bytes (flush, per event). It relies on its input being
// valid JSON, which the webhook checks before anything reaches the spool, so
// the walk only tracks nesting and skips strings.
package jsonarray

import "bytes"

// CountObjects returns the number of elements of the top-level array in b
// and whether b is an array whose elements are all objects.
func CountObjects(b []byte) (int, bool) {
	n := 0
	ok := walk(b, func([]byte) bool { n++; return true })
	if !ok {
		return 0, false
	}
	return n, true
}

// Objects calls fn with the exact bytes of each object in the top-level
// array b, in order, until fn returns false. It reports false when b is not
// an array of objects.
func Objects(b []byte, fn func(obj []byte) bool) bool { return walk(b, fn) }

func walk(b []byte, fn func([]byte) bool) bool {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
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
// b[i]. A quote is escaped when an odd number of backslashes precede it.
func stringEnd(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i+1:], '"')
		if j < 0 {
			return len(b) - 1
		}
		i += j + 1
		k := i - 1
		for b[k] == '\\' {
			k--
		}
		if (i-1-k)%2 == 0 {
			return i
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

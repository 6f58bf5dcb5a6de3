package jsonarray

import "bytes"

// Members calls fn with the key (the bytes between its quotes, escapes as
// written) and the value (its exact bytes) of each top-level member of the
// object obj, in order, and reports whether obj is one JSON object nesting
// at most MaxDepth levels. When it reports false, fn may have been called
// for some members.
//
// It is stricter than flush's parser (fastjson): numbers, literals,
// punctuation and whitespace follow RFC 8259 exactly, so whatever it
// accepts fastjson parses, with the same members. Like fastjson it does not
// check what is inside a string beyond finding its end. It lets flush's
// first pass read the members the dedupe rule needs without a separate
// depth walk and a parse tree, in less than half the time (BENCHMARKS.md).
func Members(obj []byte, fn func(key, value []byte)) bool {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return skipSpace(obj, i+1) == len(obj)
	}
	for {
		ks, ke, next, ok := key(obj, i)
		if !ok {
			return false
		}
		vs := skipSpace(obj, next)
		ve, ok := skipValue(obj, vs, 1)
		if !ok {
			return false
		}
		fn(obj[ks:ke], obj[vs:ve])
		i = skipSpace(obj, ve)
		if i >= len(obj) {
			return false
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return skipSpace(obj, i+1) == len(obj)
		default:
			return false
		}
	}
}

// key reads `"key" :` at b[i]: the key's bytes are b[start:end], and the
// member's value starts after next (whitespace aside).
func key(b []byte, i int) (start, end, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, 0, false
	}
	e, ok := closeQuote(b, i)
	if !ok {
		return 0, 0, 0, false
	}
	j := skipSpace(b, e+1)
	if j >= len(b) || b[j] != ':' {
		return 0, 0, 0, false
	}
	return i + 1, e, j + 1, true
}

// closeQuote returns the index of the quote that closes the string opening
// at b[i], if there is one. A quote is escaped when an odd number of
// backslashes precede it.
func closeQuote(b []byte, i int) (int, bool) {
	for {
		j := bytes.IndexByte(b[i+1:], '"')
		if j < 0 {
			return 0, false
		}
		i += j + 1
		k := i - 1
		for b[k] == '\\' {
			k--
		}
		if (i-1-k)%2 == 0 {
			return i, true
		}
	}
}

// skipValue returns the index just past the value starting at b[i], inside
// a container at depth depth.
func skipValue(b []byte, i, depth int) (int, bool) {
	if i < len(b) && (b[i] == '{' || b[i] == '[') {
		return skipContainer(b, i, depth)
	}
	return scalar(b, i)
}

// scalar returns the index just past the string, number or literal at b[i].
func scalar(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	var lit string
	switch b[i] {
	case '"':
		e, ok := closeQuote(b, i)
		return e + 1, ok
	case 't':
		lit = "true"
	case 'f':
		lit = "false"
	case 'n':
		lit = "null"
	default:
		return number(b, i)
	}
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return i, false
	}
	return i + len(lit), true
}

// skipContainer is skipValue for an object or an array at b[i].
func skipContainer(b []byte, i, depth int) (int, bool) {
	var closers [MaxDepth]byte // of the containers open inside this value
	n := 0
	for {
		if i >= len(b) {
			return i, false
		}
		if c := b[i]; c == '{' || c == '[' {
			if depth+n+1 > MaxDepth {
				return i, false
			}
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			i = skipSpace(b, i+1)
			if i >= len(b) || b[i] != closer {
				closers[n] = closer
				n++
				if c == '{' {
					_, _, next, ok := key(b, i)
					if !ok {
						return i, false
					}
					i = next
				}
				i = skipSpace(b, i)
				continue
			}
			i++ // an empty container is a whole value
		} else {
			var ok bool
			if i, ok = scalar(b, i); !ok {
				return i, false
			}
		}
		// A value has ended: close what it ends, or go on to the next
		// element of the innermost container.
		for {
			if n == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == closers[n-1] {
				n--
				i++
				continue
			}
			if b[i] != ',' {
				return i, false
			}
			i = skipSpace(b, i+1)
			if closers[n-1] == '}' {
				_, _, next, ok := key(b, i)
				if !ok {
					return i, false
				}
				i = skipSpace(b, next)
			}
			break
		}
	}
}

// number returns the index just past the number at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

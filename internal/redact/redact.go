// Package redact is the one place that makes URLs and errors safe to print:
// every URL a user gives sgload (a bucket, a tee target, a forward endpoint,
// the SendGrid API, an export download link) may carry credentials in its
// user info or its query, and Go's own errors quote request URLs in full
// (net/http hides only the password).
package redact

import (
	"errors"
	"net/url"
	"sort"
	"strings"
)

// Mask replaces a secret in printed text.
const Mask = "REDACTED"

// harmless are query parameters whose values are kept: they name where a
// store is, never who may use it (gocloud's bucket URL options).
var harmless = map[string]bool{
	"region": true, "endpoint": true, "use_path_style": true, "disable_https": true, "s3ForcePathStyle": true,
	"protocol": true, "domain": true, "localemu": true, "prefix": true, "awssdk": true, "dualstack": true,
	"fips": true, "accelerate": true, "anonymous": true, "no_tmp_dir": true, "metadata": true, "create_dir": true,
	"dir_file_mode": true, "hostname_immutable": true, "rate_limiter_capacity": true, "ssetype": true,
	"response_checksum_validation": true, "request_checksum_calculation": true, "storage_account": true,
}

// URL returns s with its user info, every query value but harmless ones and
// every path segment that looks like a token (24 or more letters, digits,
// '-' or '_', with letters and digits both: sgload's own URL tokens, a
// chat hook's key; not in local paths) replaced by Mask; an endpoint given
// in the query is redacted the same way.
// Text that does not parse as a URL comes back masked whole, unless it
// holds nothing that could be a credential.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.ContainsAny(s, "@?") {
			return Mask
		}
		return s
	}
	return urlString(u)
}

func urlString(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(Mask)
	}
	if c.Path != "" && c.Scheme != "" && c.Scheme != "file" { // a local folder's names are no secret
		segs := strings.Split(c.Path, "/")
		for i, seg := range segs {
			if looksLikeToken(seg) {
				segs[i] = Mask
			}
		}
		c.Path, c.RawPath = strings.Join(segs, "/"), ""
	}
	if c.RawQuery != "" {
		q := c.Query()
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			for _, v := range q[k] {
				if b.Len() > 0 {
					b.WriteByte('&')
				}
				b.WriteString(url.QueryEscape(k))
				b.WriteByte('=')
				switch {
				case k == "endpoint":
					b.WriteString(url.QueryEscape(URL(v)))
				case harmless[k]:
					b.WriteString(url.QueryEscape(v))
				default:
					b.WriteString(Mask)
				}
			}
		}
		c.RawQuery = b.String()
	}
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

func looksLikeToken(seg string) bool {
	if len(seg) < 24 {
		return false
	}
	var letter, digit bool
	for _, r := range seg {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letter = true
		case r >= '0' && r <= '9':
			digit = true
		case r == '-' || r == '_':
		default:
			return false
		}
	}
	return letter && digit
}

// Error returns err with the URL of every *url.Error in its chain
// redacted. The message of an error that wraps a *url.Error was made when
// it was wrapped, so call Error where the error first appears: on what an
// HTTP client returns.
func Error(err error) error {
	var ue *url.Error
	if err == nil || !errors.As(err, &ue) {
		return err
	}
	if ue == err {
		return &url.Error{Op: ue.Op, URL: URL(ue.URL), Err: ue.Err}
	}
	// A wrapped *url.Error: its text is already in the wrapper's message.
	return &redacted{msg: strings.ReplaceAll(err.Error(), ue.URL, URL(ue.URL)), err: err}
}

// Credentials returns the parts of a URL that may be secret, the ones URL
// masks: its user name and password, and every query value that is not a
// harmless option (an endpoint's own credentials included).
func Credentials(s string) []string {
	u, err := url.Parse(s)
	if err != nil {
		return []string{s}
	}
	var out []string
	if u.User != nil {
		out = append(out, u.User.Username())
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	for k, vs := range u.Query() {
		for _, v := range vs {
			switch {
			case k == "endpoint":
				out = append(out, Credentials(v)...)
			case !harmless[k]:
				out = append(out, v)
			}
		}
	}
	return out
}

// Scrub returns err with every occurrence of each secret in its message
// replaced by Mask, keeping its chain (errors.Is, errors.As and
// gcerrors.Code still see through it): for errors from libraries that may
// quote what they were given.
func Scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if s := Text(msg, secrets...); s != msg {
		return &redacted{msg: s, err: err}
	}
	return err
}

// Text replaces every occurrence of each secret in s with Mask: for
// messages from libraries that may quote a credential they were given.
func Text(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	return s
}

// redacted keeps the chain of the original error (errors.Is and As still
// work) behind a redacted message.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

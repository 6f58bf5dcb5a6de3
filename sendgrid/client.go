// Package sendgrid is sgload's client for the SendGrid v3 API, as far as
// object sync needs it: authenticated requests, SendGrid's rate limits
// (X-RateLimit-Reset is an absolute epoch), retries of 429 and 5xx with
// backoff and a cap, timeouts, and errors that say what to do.
package sendgrid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sgload/sgload/internal/backoff"
	"github.com/sgload/sgload/internal/redact"
	"github.com/sgload/sgload/internal/watchdog"
)

// DefaultBaseURL is SendGrid's public API (EU subusers use
// https://api.eu.sendgrid.com).
const DefaultBaseURL = "https://api.sendgrid.com"

// Client calls the API. The zero value is not usable; use New.
type Client struct {
	base     *url.URL
	key      string
	http     *http.Client
	download *http.Client // export files: no overall timeout
	log      *slog.Logger
	onBehalf string

	// MaxRetries bounds retries of one request (429, 5xx, network errors).
	MaxRetries int
	// MaxWait caps one wait for a rate limit or a backoff.
	MaxWait time.Duration
	// Backoff is the first retry's delay; it doubles, with jitter.
	Backoff time.Duration
	// StallTimeout fails an export download that sends nothing for this
	// long (2 minutes); API calls have an overall timeout of 2 minutes.
	StallTimeout time.Duration
	// Sleep waits (tests replace it to observe the waits).
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time

	mu        sync.Mutex
	waitUntil map[string]time.Time // per path: SendGrid limits each endpoint on its own
}

// New returns a client for baseURL (DefaultBaseURL when empty) with the API
// key. onBehalfOf, when set, makes requests on behalf of a subuser.
func New(baseURL, apiKey, onBehalfOf string, log *slog.Logger) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("API URL %q is not a URL", redact.URL(baseURL))
	}
	if apiKey == "" {
		return nil, errors.New("no API key: set SENDGRID_API_KEY")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		base: u, key: apiKey, log: log, onBehalf: onBehalfOf,
		http:       &http.Client{Timeout: 2 * time.Minute},
		download:   &http.Client{Transport: downloadTransport()},
		MaxRetries: 5, MaxWait: 2 * time.Minute, Backoff: time.Second, StallTimeout: 2 * time.Minute,
		Sleep: backoff.Sleep, Now: time.Now,
	}, nil
}

// SetHTTPClient replaces the HTTP client (tests, proxies).
func (c *Client) SetHTTPClient(h *http.Client) { c.http, c.download = h, h }

// downloadTransport bounds the wait for an export file's headers only: an
// overall client timeout would also cut off a large file while it streams
// into the spool.
func downloadTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 2 * time.Minute
	return t
}

// Error is a response the API refused. Its text never holds the API key.
type Error struct {
	Status int
	Method string
	Path   string
	Body   string
}

func (e *Error) Error() string {
	body := strings.TrimSpace(e.Body)
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, body)
}

// ErrUnauthorized wraps 401 and 403 answers: the key is wrong, revoked, or
// lacks a scope. No retry helps.
var ErrUnauthorized = errors.New("the API key was refused")

// Response is a successful answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Get requests path (relative to the base URL, or an absolute URL on the
// same host, as _metadata.next links are) with query parameters.
func (c *Client) Get(ctx context.Context, path string, q url.Values) (*Response, error) {
	return c.Do(ctx, http.MethodGet, path, q, nil)
}

// Post sends a JSON body.
func (c *Client) Post(ctx context.Context, path string, body []byte) (*Response, error) {
	return c.Do(ctx, http.MethodPost, path, nil, body)
}

// Do performs one API call with retries.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body []byte) (*Response, error) {
	u, err := c.resolve(path, q)
	if err != nil {
		return nil, err
	}
	display := displayPath(u)
	for attempt := 0; ; attempt++ {
		if err := c.waitForRateLimit(ctx, display); err != nil {
			return nil, err
		}
		resp, err := c.once(ctx, method, u, body)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			err = fmt.Errorf("%s %s: %w", method, display, err)
			wait = c.backoff(attempt)
		case resp.Status == http.StatusTooManyRequests:
			err = &Error{Status: resp.Status, Method: method, Path: display, Body: string(resp.Body)}
			wait = c.rateLimitWait(resp.Header, attempt)
			c.noteRateLimit(display, resp.Header)
		case resp.Status >= 500:
			err = &Error{Status: resp.Status, Method: method, Path: display, Body: string(resp.Body)}
			wait = c.backoff(attempt)
		case resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden:
			return nil, fmt.Errorf("%w: %w", ErrUnauthorized, &Error{Status: resp.Status, Method: method, Path: display, Body: string(resp.Body)})
		case resp.Status >= 300:
			return resp, &Error{Status: resp.Status, Method: method, Path: display, Body: string(resp.Body)}
		default:
			c.noteRateLimit(display, resp.Header)
			return resp, nil
		}
		if attempt >= c.MaxRetries {
			return nil, fmt.Errorf("giving up after %d attempts: %w", attempt+1, err)
		}
		c.log.Warn("SendGrid API call failed; retrying", "path", display, "attempt", attempt+1, "wait", wait.String(), "err", err)
		if err := c.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// displayPath is u's path as errors and logs show it: the base URL's may
// hold a token.
func displayPath(u *url.URL) string {
	if r, err := url.Parse(redact.URL(u.String())); err == nil {
		return r.Path
	}
	return "?"
}

func (c *Client) resolve(path string, q url.Values) (*url.URL, error) {
	var u *url.URL
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		next, err := url.Parse(path)
		if err != nil {
			return nil, fmt.Errorf("next page link %q: %w", redact.URL(path), redact.Error(err))
		}
		// Pagination links name the API's public host; keep the configured one.
		u = c.base.ResolveReference(&url.URL{Path: next.Path, RawQuery: next.RawQuery})
	} else {
		u = c.base.ResolveReference(&url.URL{Path: c.base.Path + path})
	}
	if len(q) > 0 {
		merged := u.Query()
		for k, vs := range q {
			merged[k] = vs
		}
		u.RawQuery = merged.Encode()
	}
	return u, nil
}

func (c *Client) once(ctx context.Context, method string, u *url.URL, body []byte) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, redact.Error(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "sgload")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.onBehalf != "" {
		req.Header.Set("on-behalf-of", c.onBehalf)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, redact.Error(err) // it quotes the URL, query and all
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

func (c *Client) backoff(attempt int) time.Duration {
	d := c.Backoff << min(attempt, 10)
	d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	return min(d, c.MaxWait)
}

// rateLimitWait reads when the limit resets: X-RateLimit-Reset is an
// absolute Unix time in SendGrid's API (not seconds to wait, as elsewhere);
// Retry-After, when present, is seconds.
func (c *Client) rateLimitWait(h http.Header, attempt int) time.Duration {
	if s := h.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return min(time.Duration(n)*time.Second, c.MaxWait)
		}
	}
	if reset, ok := resetTime(h); ok {
		d := reset.Sub(c.Now()) + 100*time.Millisecond
		if d <= 0 {
			d = 100 * time.Millisecond
		}
		return min(d, c.MaxWait)
	}
	return max(c.backoff(attempt), 1100*time.Millisecond)
}

func resetTime(h http.Header) (time.Time, bool) {
	n, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// noteRateLimit remembers an exhausted limit, so the next request waits for
// the reset instead of earning a 429.
func (c *Client) noteRateLimit(path string, h http.Header) {
	if h.Get("X-RateLimit-Remaining") != "0" {
		return
	}
	if reset, ok := resetTime(h); ok {
		c.mu.Lock()
		if c.waitUntil == nil {
			c.waitUntil = map[string]time.Time{}
		}
		c.waitUntil[path] = reset
		c.mu.Unlock()
	}
}

func (c *Client) waitForRateLimit(ctx context.Context, path string) error {
	c.mu.Lock()
	until := c.waitUntil[path]
	c.mu.Unlock()
	if d := until.Sub(c.Now()); d > 0 {
		return c.Sleep(ctx, min(d+100*time.Millisecond, c.MaxWait))
	}
	return nil
}

// Download fetches a file the API pointed to (a contacts export): it goes
// to another host, without the API key. The file streams as the caller
// reads it; a download that sends nothing for StallTimeout fails.
func (c *Client) Download(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	for attempt := 0; ; attempt++ {
		wctx, dog := watchdog.New(ctx, c.StallTimeout)
		req, err := http.NewRequestWithContext(wctx, http.MethodGet, rawURL, nil)
		if err != nil {
			dog.Stop()
			return nil, redact.Error(err)
		}
		resp, err := c.download.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			dog.Kick()
			return &download{r: dog.Reader(resp.Body), body: resp.Body, dog: dog}, nil
		}
		dog.Stop()
		if err == nil {
			_ = resp.Body.Close()
			err = fmt.Errorf("download export: HTTP %d", resp.StatusCode)
			if resp.StatusCode < 500 && resp.StatusCode != 429 {
				return nil, err
			}
		} else {
			// The link is signed: its query is a credential.
			err = fmt.Errorf("download export: %w", redact.Error(dog.Err(err)))
		}
		if attempt >= c.MaxRetries || ctx.Err() != nil {
			return nil, err
		}
		if err := c.Sleep(ctx, c.backoff(attempt)); err != nil {
			return nil, err
		}
	}
}

// download is an export file being read, watched for stalls.
type download struct {
	r    io.Reader
	body io.Closer
	dog  *watchdog.Watchdog
}

func (d *download) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("download export: %w", redact.Error(d.dog.Err(err)))
	}
	return n, err
}

func (d *download) Close() error {
	d.dog.Stop()
	return d.body.Close()
}

package sendgrid

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// ScopesTimeout bounds the key check: one call, made before any work, so
// an unreachable API fails in seconds instead of after every collection's
// retries.
const ScopesTimeout = 15 * time.Second

// Scopes returns the permissions of the API key (GET /v3/scopes) within
// ScopesTimeout. A broken connection is tried again (three attempts in
// all: a keep-alive connection the server had closed is common), an HTTP
// answer is not. A refused key is ErrUnauthorized.
func (c *Client) Scopes(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, ScopesTimeout)
	defer cancel()
	u, err := c.resolve("/v3/scopes", nil)
	if err != nil {
		return nil, err
	}
	display := displayPath(u)
	var resp *Response
	for attempt := 0; ; attempt++ {
		resp, err = c.once(ctx, http.MethodGet, u, nil)
		if err == nil {
			break
		}
		err = fmt.Errorf("GET %s: %w", display, err)
		if attempt == 2 || ctx.Err() != nil {
			return nil, err
		}
		if serr := c.Sleep(ctx, c.backoff(attempt)); serr != nil {
			return nil, err
		}
	}
	switch {
	case resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden:
		return nil, fmt.Errorf("%w: %w", ErrUnauthorized, &Error{Status: resp.Status, Method: http.MethodGet, Path: display, Body: string(resp.Body)})
	case resp.Status != http.StatusOK:
		return nil, &Error{Status: resp.Status, Method: http.MethodGet, Path: display, Body: string(resp.Body)}
	}
	var body struct {
		Scopes []string `json:"scopes"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return nil, fmt.Errorf("GET %s: %w", display, err)
	}
	return body.Scopes, nil
}

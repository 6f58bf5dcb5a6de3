package sendgrid

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// ScopesTimeout bounds the key check: it is one request, made before any
// work, so an unreachable API fails in seconds instead of after every
// collection's retries.
const ScopesTimeout = 15 * time.Second

// Scopes returns the permissions of the API key (GET /v3/scopes), asking
// once, without retries, within ScopesTimeout. A refused key is
// ErrUnauthorized.
func (c *Client) Scopes(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, ScopesTimeout)
	defer cancel()
	u, err := c.resolve("/v3/scopes", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.once(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Path, err)
	}
	switch {
	case resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden:
		return nil, fmt.Errorf("%w: %w", ErrUnauthorized, &Error{Status: resp.Status, Method: http.MethodGet, Path: u.Path, Body: string(resp.Body)})
	case resp.Status != http.StatusOK:
		return nil, &Error{Status: resp.Status, Method: http.MethodGet, Path: u.Path, Body: string(resp.Body)}
	}
	var body struct {
		Scopes []string `json:"scopes"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Path, err)
	}
	return body.Scopes, nil
}

// Package prismtest fronts the Stoplight Prism servers that make test
// starts (one per SendGrid OpenAPI spec file, scripts/emulators.sh) with one
// base URL, routing each API path to the spec that describes it, and
// records every answer, so tests can check that SendGrid's own specs
// accept every request sgload makes.
package prismtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
)

// Route sends paths under Prefix to the Prism serving Spec (a file name in
// testdata/sendgrid-oai/).
type Route struct{ Prefix, Spec string }

// Proxy is the front.
type Proxy struct {
	*httptest.Server
	mu      sync.Mutex
	refused []string
	calls   map[string]int
}

// New starts a proxy over the routes; the test is skipped when Prism is
// not running (make test starts it) unless SGLOAD_REQUIRE_EMULATORS is set.
func New(t *testing.T, routes []Route) *Proxy {
	t.Helper()
	env := os.Getenv("SGLOAD_TEST_PRISM")
	if env == "" {
		if os.Getenv("SGLOAD_REQUIRE_EMULATORS") != "" {
			t.Fatal("SGLOAD_TEST_PRISM is not set: run make test, which starts Prism")
		}
		t.Skip("no Prism (run make test)")
	}
	targets := map[string]*url.URL{}
	for _, kv := range strings.Fields(env) {
		name, u, _ := strings.Cut(kv, "=")
		targets[name], _ = url.Parse(u)
	}
	p := &Proxy{calls: map[string]int{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, route := range routes {
			if !strings.HasPrefix(r.URL.Path, route.Prefix) {
				continue
			}
			target := targets[route.Spec]
			if target == nil {
				t.Errorf("no Prism for %s", route.Spec)
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			rp := httputil.NewSingleHostReverseProxy(target)
			rp.ModifyResponse = func(resp *http.Response) error {
				p.mu.Lock()
				defer p.mu.Unlock()
				p.calls[r.URL.Path]++
				if resp.StatusCode >= 400 {
					body, _ := io.ReadAll(io.LimitReader(resp.Body, 2000))
					p.refused = append(p.refused, r.Method+" "+r.URL.String()+" -> "+resp.Status+" "+resp.Header.Get("sl-violations")+" "+string(body))
				}
				return nil
			}
			rp.ServeHTTP(w, r)
			return
		}
		t.Errorf("no spec routes %s", r.URL.Path)
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(p.Close)
	return p
}

// Refused lists the requests Prism refused (method, URL, status, why).
func (p *Proxy) Refused() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refused...)
}

// Calls counts the answers per path.
func (p *Proxy) Calls(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[path]
}

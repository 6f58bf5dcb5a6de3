package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sgload/sgload/spool"
)

// Config is what a Handler needs. At least one of Signature, OAuth and
// URLTokens must be set unless InsecureNoAuth is; every one that is set must
// pass for a POST to be accepted.
type Config struct {
	Spool          *spool.Writer
	Signature      *Signature
	OAuth          *OAuth
	URLTokens      *URLTokens
	InsecureNoAuth bool
	// MaxBodyBytes refuses larger bodies with 413 (default 8 MiB; SendGrid
	// sends at most about 768 KB).
	MaxBodyBytes int64
	// MaxInFlight answers 503 beyond this many authenticated webhook
	// requests at once (default 512).
	MaxInFlight int
	// MaxBodyMemory bounds the request bodies held in memory, by all
	// requests together (default 128 MiB); past it, 503.
	MaxBodyMemory int64
	// MaxUnauthenticatedBytes bounds the bytes held, in memory or spilled to
	// disk, for senders not yet authenticated (default 1 GiB); past it, 503.
	// Bodies larger than SpillBytes may take three quarters of it.
	MaxUnauthenticatedBytes int64
	// SpillBytes: a body larger than this whose sender is not yet
	// authenticated waits for its signature check in a file in SpillDir, not
	// in memory (default 1 MiB).
	SpillBytes int64
	// SpillDir is where bodies spill (default: the system's temp folder;
	// the Server uses the spool's state/incoming).
	SpillDir string
	// MinBodyRate: after BodyGrace, a body must keep arriving at this many
	// bytes a second (default 16 KiB; negative: no minimum), and all of it
	// within BodyTimeout (default 2 minutes); otherwise 408.
	MinBodyRate int64
	BodyGrace   time.Duration
	BodyTimeout time.Duration
	// AllowNetworks, when set, answers 403 to webhook and token requests
	// from any other address (the TCP peer's).
	AllowNetworks []netip.Prefix
	Logger        *slog.Logger
	Registry      *prometheus.Registry
	// Accepted, when set, is called after a POST is durable (the raw tee).
	Accepted func(spool.Ack)
}

func (c *Config) defaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 512
	}
	if c.MaxBodyMemory <= 0 {
		c.MaxBodyMemory = 128 << 20
	}
	if c.MaxUnauthenticatedBytes <= 0 {
		c.MaxUnauthenticatedBytes = 1 << 30
	}
	if c.SpillBytes <= 0 {
		c.SpillBytes = 1 << 20
	}
	if c.MinBodyRate == 0 {
		c.MinBodyRate = 16 << 10
	}
	if c.BodyGrace <= 0 {
		c.BodyGrace = 10 * time.Second
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Methods names the authentication methods configured, for logs.
func (c Config) Methods() []string {
	var m []string
	if c.URLTokens != nil {
		m = append(m, "url_token")
	}
	if c.OAuth != nil {
		m = append(m, "oauth")
	}
	if c.Signature != nil {
		m = append(m, "signature")
	}
	if len(m) == 0 {
		m = append(m, "NONE (insecure)")
	}
	return m
}

// Handler routes sgload serve's endpoints.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	m        *metrics
	inflight chan struct{}

	mem        budget // bodies in memory
	unauth     budget // bytes held for senders not yet authenticated
	unauthReqs atomic.Int64
	pressure   recentCount // refusals for lack of capacity, last 10 s
	authFails  recentCount
	logRefusal throttle // log lines about refused requests
	logAuth    throttle
	tokens     *tokenGuard
}

// ErrNoAuth is returned by NewHandler when no method is configured and the insecure
// mode was not asked for.
var ErrNoAuth = errors.New("no authentication configured: set a signing key, OAuth client or URL token, or pass --insecure-no-auth")

// NewHandler builds the handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Signature == nil && cfg.OAuth == nil && cfg.URLTokens == nil && !cfg.InsecureNoAuth {
		return nil, ErrNoAuth
	}
	cfg.defaults()
	s := &Handler{
		cfg:        cfg,
		log:        cfg.Logger,
		mux:        http.NewServeMux(),
		inflight:   make(chan struct{}, cfg.MaxInFlight),
		mem:        budget{limit: cfg.MaxBodyMemory},
		unauth:     budget{limit: cfg.MaxUnauthenticatedBytes},
		logRefusal: newThrottle(),
		logAuth:    newThrottle(),
	}
	s.m = newMetrics(cfg.Registry, s)
	s.mux.HandleFunc("POST /webhook/sendgrid", s.webhook)
	s.mux.HandleFunc("POST /webhook/sendgrid/{token}", s.webhook)
	if cfg.OAuth != nil {
		s.tokens = newTokenGuard()
		s.mux.HandleFunc("POST /oauth/token", s.token)
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	s.mux.ServeHTTP(sw, r)
	if strings.HasPrefix(r.URL.Path, "/webhook/") {
		s.m.requests.WithLabelValues(strconv.Itoa(sw.status())).Inc()
	}
}

// Header names kept with every record: enough to verify the signature again
// and to forward the POST byte for byte. Never credentials.
var keptHeaders = []string{SignatureHeader, TimestampHeader, "Content-Type", "User-Agent"}

func (s *Handler) webhook(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.m.latency.Observe(time.Since(start).Seconds()) }()
	if !s.allowed(w, r) {
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.tooLarge(w, r)
		return
	}

	// Credentials that do not need the body are checked before reading it.
	var methods []string
	token := r.PathValue("token")
	switch {
	case token != "" && s.cfg.URLTokens == nil:
		http.NotFound(w, r)
		return
	case s.cfg.URLTokens != nil:
		if !s.cfg.URLTokens.Valid(token) {
			s.refuse(w, r, "url_token", errors.New("missing or unknown URL token"))
			return
		}
		methods = append(methods, "url_token")
	}
	if s.cfg.OAuth != nil {
		if err := s.cfg.OAuth.Check(r.Header.Get("Authorization")); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sgload", error="invalid_token"`)
			s.refuse(w, r, "oauth", err)
			return
		}
		methods = append(methods, "oauth")
	}
	// As much of the signature as can be checked without the body.
	var claim *Claim
	if s.cfg.Signature != nil {
		var err error
		if claim, err = s.cfg.Signature.Precheck(r.Header); err != nil {
			s.refuse(w, r, "signature", err)
			return
		}
	}
	// Refuse early, before reading the body, when it could not be stored.
	if err := s.cfg.Spool.Accepting(); err != nil {
		s.unavailable(w, "spool cannot take writes", err)
		return
	}
	// A sender is authenticated once it has shown a secret (URL token,
	// bearer token); with the signature alone, only once the body verifies.
	authed := len(methods) > 0 || s.cfg.Signature == nil
	if authed {
		if !s.slot(w) {
			return
		}
		defer func() { <-s.inflight }()
	} else {
		s.unauthReqs.Add(1)
		defer func() {
			if !authed {
				s.unauthReqs.Add(-1)
			}
		}()
	}

	var digest hash.Hash
	if claim != nil {
		digest = signatureHash(claim.Timestamp())
	}
	b, err := s.readBody(w, r, authed, digest)
	defer b.release()
	if err != nil {
		s.bodyFailed(w, r, err)
		return
	}
	if claim != nil {
		if err := s.cfg.Signature.VerifyDigest(claim, digest.Sum(nil)); err != nil {
			s.refuse(w, r, "signature", err)
			return
		}
		methods = append(methods, "signature")
	}
	if !authed {
		authed = true
		s.unauthReqs.Add(-1)
		if err := b.authenticated(); err != nil {
			s.bodyFailed(w, r, err)
			return
		}
		if !s.slot(w) {
			return
		}
		defer func() { <-s.inflight }()
	}
	body := b.data
	auth := "none"
	if len(methods) > 0 {
		auth = strings.Join(methods, "+")
	}
	header := make(map[string]string, len(keptHeaders))
	for _, h := range keptHeaders {
		if v := r.Header.Get(h); v != "" {
			header[h] = v
		}
	}

	n, err := ParseBody(body)
	if err != nil {
		s.quarantine(w, r, auth, header, body, err)
		return
	}
	if n == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"accepted": 0})
		return
	}
	p, err := spool.Prepare(n, auth, header, body)
	if err != nil {
		s.unavailable(w, "encode record", err)
		return
	}
	ack, err := s.cfg.Spool.Append(r.Context(), p)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return // the client is gone; it will retry
		}
		s.unavailable(w, "spool write failed", err)
		return
	}
	s.m.events.Add(float64(n))
	s.m.bytes.Add(float64(len(body)))
	if s.cfg.Accepted != nil {
		s.cfg.Accepted(ack)
	}
	writeJSON(w, http.StatusOK, map[string]any{"accepted": n, "sequence": ack.FirstSeq})
}

// slot takes one of MaxInFlight places for an authenticated request, or
// answers 503.
func (s *Handler) slot(w http.ResponseWriter) bool {
	select {
	case s.inflight <- struct{}{}:
		return true
	default:
		s.overloaded(w, refusedInFlight, errors.New("too many requests in flight"))
		return false
	}
}

// bodyFailed answers a body that could not be read.
func (s *Handler) bodyFailed(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	var eb *errBudget
	switch {
	case errors.As(err, &tooBig):
		s.tooLarge(w, r)
	case errors.As(err, &eb):
		s.overloaded(w, eb.reason, err)
	case errors.Is(err, errSlow):
		s.m.refused.WithLabelValues(refusedSlow).Inc()
		s.pressure.add(time.Now())
		if ok, n := s.logRefusal.allow(); ok {
			s.log.Info("request body arrived too slowly; refused with 408", "remote", r.RemoteAddr,
				"min_rate_bytes", s.cfg.MinBodyRate, "suppressed", n)
		}
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusRequestTimeout, map[string]any{"error": err.Error()})
	default:
		// The client went away or broke off; nothing was stored, a retry helps.
		if ok, n := s.logRefusal.allow(); ok {
			s.log.Info("reading body failed", "err", err, "suppressed", n)
		}
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusRequestTimeout, map[string]any{"error": "reading body failed"})
	}
}

func (s *Handler) tooLarge(w http.ResponseWriter, r *http.Request) {
	if ok, n := s.logRefusal.allow(); ok {
		s.log.Warn("body over the limit refused; raise --max-body-bytes within 24 h and SendGrid's retries deliver it",
			"limit", s.cfg.MaxBodyBytes, "content_length", r.ContentLength, "suppressed", n)
	}
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{
		"error": "body is larger than " + strconv.FormatInt(s.cfg.MaxBodyBytes, 10) + " bytes"})
}

func (s *Handler) refuse(w http.ResponseWriter, r *http.Request, method string, err error) {
	s.m.authFailures.WithLabelValues(method).Inc()
	s.authFails.add(time.Now())
	// The reason is logged but the path is not: it may hold a URL token.
	if ok, n := s.logAuth.allow(); ok {
		s.log.Warn("webhook request refused: authentication failed", "method", method, "reason", err.Error(),
			"remote", r.RemoteAddr, "user_agent", truncate(r.UserAgent()), "suppressed", n)
	}
	w.Header().Set("Connection", "close") // an unread body is not worth reading to keep the connection
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "authentication failed (" + method + "): " + err.Error()})
}

// overloaded answers 503 for lack of capacity (SendGrid retries).
func (s *Handler) overloaded(w http.ResponseWriter, reason string, err error) {
	s.m.refused.WithLabelValues(reason).Inc()
	s.pressure.add(time.Now())
	if ok, n := s.logRefusal.allow(); ok {
		s.log.Warn("webhook request refused with 503 for lack of capacity (SendGrid will retry)", "reason", reason,
			"err", err.Error(), "suppressed", n)
	}
	w.Header().Set("Retry-After", "30")
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "server busy; retry later"})
}

func (s *Handler) unavailable(w http.ResponseWriter, what string, err error) {
	if ok, n := s.logRefusal.allow(); ok {
		s.log.Error("webhook request refused with 503 (SendGrid will retry)", "what", what, "err", err, "suppressed", n)
	}
	w.Header().Set("Retry-After", "30")
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": what + "; retry later"})
}

func (s *Handler) quarantine(w http.ResponseWriter, r *http.Request, auth string, header map[string]string, body []byte, reason error) {
	path := r.URL.Path
	if r.PathValue("token") != "" {
		path = "/webhook/sendgrid/{token}"
	}
	name, err := s.cfg.Spool.Quarantine(spool.Quarantined{
		ReceivedAt: time.Now().UTC(),
		Reason:     reason.Error(),
		Method:     r.Method,
		Path:       path,
		Auth:       auth,
		Header:     header,
		Body:       bytes.Clone(body),
	})
	if err != nil {
		// Not kept, so not refused for good: ask for a retry instead.
		s.unavailable(w, "quarantine write failed", err)
		return
	}
	s.log.Warn("unparsable body kept in quarantine", "reason", reason.Error(), "file", name, "bytes", len(body))
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": reason.Error(), "quarantined": name})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

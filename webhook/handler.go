package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
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
	// MaxInFlight answers 503 beyond this many webhook requests at once
	// (default 512), which bounds memory to about MaxInFlight × body size.
	MaxInFlight int
	Logger      *slog.Logger
	Registry    *prometheus.Registry
	// Accepted, when set, is called after a POST is durable (the raw tee).
	Accepted func(spool.Ack)
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
	bufs     sync.Pool
}

// ErrNoAuth is returned by NewHandler when no method is configured and the insecure
// mode was not asked for.
var ErrNoAuth = errors.New("no authentication configured: set a signing key, OAuth client or URL token, or pass --insecure-no-auth")

// NewHandler builds the handler.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Signature == nil && cfg.OAuth == nil && cfg.URLTokens == nil && !cfg.InsecureNoAuth {
		return nil, ErrNoAuth
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 512
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Handler{
		cfg:      cfg,
		log:      cfg.Logger,
		mux:      http.NewServeMux(),
		m:        newMetrics(cfg.Registry),
		inflight: make(chan struct{}, cfg.MaxInFlight),
	}
	s.mux.HandleFunc("POST /webhook/sendgrid", s.webhook)
	s.mux.HandleFunc("POST /webhook/sendgrid/{token}", s.webhook)
	if cfg.OAuth != nil {
		s.mux.Handle("POST /oauth/token", cfg.OAuth)
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

	select {
	case s.inflight <- struct{}{}:
		defer func() { <-s.inflight }()
	default:
		s.unavailable(w, "too many requests in flight", errors.New("overloaded"))
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
	// Refuse early, before reading the body, when it could not be stored.
	if err := s.cfg.Spool.Accepting(); err != nil {
		s.unavailable(w, "spool cannot take writes", err)
		return
	}

	buf := s.getBuf()
	defer s.putBuf(buf)
	body, err := readBody(w, r, buf, s.cfg.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.log.Warn("body over the limit refused; raise --max-body-bytes within 24 h and SendGrid's retries deliver it",
				"limit", s.cfg.MaxBodyBytes, "content_length", r.ContentLength)
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{
				"error": "body is larger than " + strconv.FormatInt(s.cfg.MaxBodyBytes, 10) + " bytes"})
			return
		}
		// The client went away or stalled; nothing was stored, a retry helps.
		s.log.Info("reading body failed", "err", err)
		writeJSON(w, http.StatusRequestTimeout, map[string]any{"error": "reading body: " + err.Error()})
		return
	}
	if s.cfg.Signature != nil {
		if err := s.cfg.Signature.Verify(r.Header, body); err != nil {
			s.refuse(w, r, "signature", err)
			return
		}
		methods = append(methods, "signature")
	}
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

func (s *Handler) refuse(w http.ResponseWriter, r *http.Request, method string, err error) {
	s.m.authFailures.WithLabelValues(method).Inc()
	// The reason is logged but the path is not: it may hold a URL token.
	s.log.Warn("webhook request refused: authentication failed", "method", method, "reason", err.Error(),
		"remote", r.RemoteAddr, "user_agent", r.UserAgent())
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "authentication failed (" + method + "): " + err.Error()})
}

func (s *Handler) unavailable(w http.ResponseWriter, what string, err error) {
	s.log.Error("webhook request refused with 503 (SendGrid will retry)", "what", what, "err", err)
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

func (s *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Spool.Ready(); err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

func readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

func (s *Handler) getBuf() *bytes.Buffer {
	if b, ok := s.bufs.Get().(*bytes.Buffer); ok {
		return b
	}
	return new(bytes.Buffer)
}

func (s *Handler) putBuf(b *bytes.Buffer) {
	if b.Cap() > 4*int(s.cfg.MaxBodyBytes) {
		return
	}
	b.Reset()
	s.bufs.Put(b)
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

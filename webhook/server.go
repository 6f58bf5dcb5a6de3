package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/tee"
)

// ServerOptions configure a Server: what sgload serve runs.
type ServerOptions struct {
	// Spool is the spool folder (created if missing) and its writer's
	// options.
	Spool        string
	SpoolOptions spool.Options
	// Handler is the webhook's configuration; Spool, Registry and Accepted
	// are filled in by the Server.
	Handler Config
	// Addr is the listen address (":8080").
	Addr string
	// TLSCert and TLSKey, when set, serve HTTPS (TLS 1.2 or later).
	TLSCert, TLSKey string
	// Tees are URLs every accepted POST is delivered to (package tee).
	Tees []string
	// DebugAddr, when set, serves Go's pprof profiles there.
	DebugAddr string
	// ShutdownTimeout is how long Close waits for requests in flight (30 s).
	ShutdownTimeout time.Duration
	// Registry gets every metric; a new one when nil. Jobs that want their
	// metrics on /metrics register on it.
	Registry *prometheus.Registry
	// Jobs run beside the server until Close (sgload run's periodic flush).
	Jobs []func(context.Context)
	// Routes are served beside the webhook's own, by pattern ("GET /status":
	// sgload's status page).
	Routes map[string]http.Handler
	Logger *slog.Logger
}

// Server is sgload serve: the spool's writer, the webhook handler on an
// HTTP server, the raw tees and any background jobs, opened together and
// closed in the order that loses nothing.
type Server struct {
	opts    ServerOptions
	handler *Handler
	log     *slog.Logger
	writer  *spool.Writer
	http    *http.Server
	ln      net.Listener
	debug   *http.Server
	errc    chan error
	stopJob context.CancelFunc
	jobs    sync.WaitGroup
}

// Open opens the spool, starts listening, serving and the background work.
// The caller must Close the Server.
func Open(opts ServerOptions) (_ *Server, err error) {
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	reg := opts.Registry
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{opts: opts, log: opts.Logger, errc: make(chan error, 1)}

	so := opts.SpoolOptions
	so.Logger, so.Registerer = s.log.With("component", "spool"), reg
	if s.writer, err = spool.OpenWriter(opts.Spool, so); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.writer.Close()
		}
	}()
	var tees []*tee.Tee
	for _, u := range opts.Tees {
		t, err := tee.New(s.writer.Dir(), u, s.log, reg) // its lines carry "tee": the target
		if err != nil {
			return nil, err
		}
		tees = append(tees, t)
	}
	cfg := opts.Handler
	cfg.Spool, cfg.Registry = s.writer, reg
	cfg.SpillDir = s.writer.Dir().Incoming()
	if err := durable.MkdirAll(cfg.SpillDir, 0o755); err != nil {
		return nil, err
	}
	// Spilled bodies are unlinked while in use; anything here is left from
	// a release that did not unlink them.
	if old, _ := filepath.Glob(filepath.Join(cfg.SpillDir, "*")); len(old) > 0 {
		for _, p := range old {
			_ = os.Remove(p)
		}
	}
	if len(tees) > 0 {
		cfg.Accepted = func(spool.Ack) {
			for _, t := range tees {
				t.Notify()
			}
		}
	}
	h, err := NewHandler(cfg)
	if err != nil {
		return nil, err
	}
	s.handler = h
	s.http = &http.Server{
		Addr:              opts.Addr,
		Handler:           withRoutes(h, opts.Routes),
		ReadHeaderTimeout: 10 * time.Second,
		// The handler sets each body's own deadlines (minimum rate, body
		// timeout); this caps what it does not read itself.
		ReadTimeout:    h.cfg.BodyTimeout + 10*time.Second,
		WriteTimeout:   h.cfg.BodyTimeout + time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		TLSConfig:      &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if s.ln, err = net.Listen("tcp", opts.Addr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	go func() {
		if opts.TLSCert != "" {
			s.errc <- s.http.ServeTLS(s.ln, opts.TLSCert, opts.TLSKey)
		} else {
			s.errc <- s.http.Serve(s.ln)
		}
	}()
	if opts.DebugAddr != "" {
		s.serveDebug(opts.DebugAddr)
	}
	var ctx context.Context
	ctx, s.stopJob = context.WithCancel(context.Background())
	for _, t := range tees {
		s.jobs.Add(1)
		go func() { defer s.jobs.Done(); t.Run(ctx) }()
	}
	for _, job := range opts.Jobs {
		s.jobs.Add(1)
		go func() { defer s.jobs.Done(); job(ctx) }()
	}
	hc := h.cfg
	s.log.Info("serving",
		"addr", s.ln.Addr().String(), "spool", s.writer.Dir().Root, "node", s.writer.Node(),
		"auth", cfg.Methods(), "max_body_bytes", hc.MaxBodyBytes, "max_body_memory", hc.MaxBodyMemory,
		"max_unauthenticated_bytes", hc.MaxUnauthenticatedBytes, "min_body_rate", hc.MinBodyRate,
		"allow_cidr", len(hc.AllowNetworks) > 0, "tls", opts.TLSCert != "")
	return s, nil
}

// withRoutes mounts extra routes beside h, which keeps every other path.
func withRoutes(h http.Handler, routes map[string]http.Handler) http.Handler {
	if len(routes) == 0 {
		return h
	}
	mux := http.NewServeMux()
	for pattern, r := range routes {
		mux.Handle(pattern, r)
	}
	mux.Handle("/", h)
	return mux
}

// serveDebug serves pprof on its own mux and address, never on the
// webhook's listener.
func (s *Server) serveDebug(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// The readiness details the public /readyz leaves out.
	mux.HandleFunc("/debug/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.writer.Ready(); err != nil {
			fmt.Fprintf(w, "not ready: %v\n", err)
		} else {
			fmt.Fprintf(w, "ready: spool %s\n", s.writer.Dir().Root)
		}
		fmt.Fprintf(w, "%+v\n", s.handler.Pressure())
	})
	s.debug = &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		s.log.Info("pprof listening", "addr", addr)
		if err := s.debug.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("pprof server", "err", err)
		}
	}()
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Err delivers the error that stopped the HTTP server, if it stops by
// itself.
func (s *Server) Err() <-chan error { return s.errc }

// Close stops taking connections, waits up to ShutdownTimeout for requests
// in flight, stops the background work, then closes the spool, which seals
// the open segment.
func (s *Server) Close() error {
	s.log.Info("shutting down: no new requests; finishing in-flight ones", "timeout", s.opts.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Error("shutdown did not finish in time; unanswered requests will be retried by SendGrid", "err", err)
	}
	if s.debug != nil {
		_ = s.debug.Close()
	}
	s.stopJob()
	s.jobs.Wait()
	if err := s.writer.Close(); err != nil {
		return fmt.Errorf("close spool: %w", err)
	}
	s.log.Info("stopped; spool sealed")
	return nil
}

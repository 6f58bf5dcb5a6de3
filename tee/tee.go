// Package tee is serve's raw tee: it passes every accepted POST, byte for
// byte and with the headers a downstream signature check needs, to another
// webhook consumer. It reads from the spool, after the POST is durable, with
// its own cursor, and retries until the consumer takes it, so a consumer
// that is down for a while misses nothing and never slows ingest.
package tee

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sgload/sgload/internal/backoff"
	"github.com/sgload/sgload/internal/redact"
	"github.com/sgload/sgload/spool"
)

// Tee forwards to one URL.
type Tee struct {
	target   string
	display  string
	follower *spool.Follower
	client   *http.Client
	log      *slog.Logger
	notify   chan struct{}
	m        *metrics

	// MaxBackoff caps the wait between retries (default 1 minute).
	MaxBackoff time.Duration
	// Poll is how often the spool is looked at without a notification.
	Poll time.Duration
}

type metrics struct {
	sent, failed prometheus.Counter
	lag          prometheus.GaugeFunc
}

// New makes a tee for target over the spool. A tee that has never run
// starts after the last record now in the spool: it forwards new POSTs.
// Call New before serve accepts requests.
func New(d spool.Dir, target string, log *slog.Logger, reg prometheus.Registerer) (*Tee, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tee URL %q: want http(s)://host/path", redact.URL(target))
	}
	sum := sha256.Sum256([]byte(target))
	name := "tee-" + hex.EncodeToString(sum[:6])
	f, err := spool.OpenFollower(d, name)
	if err != nil {
		return nil, err
	}
	if !f.HasCursor() {
		if err := f.StartAtEnd(); err != nil {
			return nil, err
		}
	}
	display := redact.URL(u.Scheme + "://" + u.Host + u.Path) // no user info, no query, no token in the path
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tee{target: target, display: display, follower: f, log: log.With("tee", display),
		client: &http.Client{Timeout: 30 * time.Second}, notify: make(chan struct{}, 1),
		MaxBackoff: time.Minute, Poll: 5 * time.Second}
	labels := prometheus.Labels{"target": display}
	t.m = &metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "sgload_tee_posts_total", Help: "POSTs the raw tee delivered.", ConstLabels: labels}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "sgload_tee_failures_total",
			Help: "Failed attempts to deliver (each is retried).", ConstLabels: labels}),
		lag: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sgload_tee_lag_bytes",
			Help: "Spool bytes not yet delivered by the raw tee.", ConstLabels: labels}, func() float64 {
			n, _ := f.Lag()
			return float64(n)
		}),
	}
	if reg != nil {
		reg.MustRegister(t.m.sent, t.m.failed, t.m.lag)
	}
	return t, nil
}

// Notify says a POST was accepted; it never blocks.
func (t *Tee) Notify() {
	select {
	case t.notify <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends.
func (t *Tee) Run(ctx context.Context) {
	defer t.follower.Close()
	for {
		rec, pos, err := t.follower.Next()
		switch {
		case errors.Is(err, io.EOF):
			select {
			case <-ctx.Done():
				return
			case <-t.notify:
			case <-time.After(t.Poll):
			}
			continue
		case err != nil:
			t.log.Error("raw tee cannot read the spool; retrying", "err", err)
			if backoff.Sleep(ctx, t.MaxBackoff) != nil {
				return
			}
			continue
		}
		if !t.deliver(ctx, rec) {
			return
		}
		if err := t.follower.Commit(pos); err != nil {
			t.log.Error("raw tee cannot save its cursor", "err", err)
		}
	}
}

// deliver POSTs one record until the target answers 2xx; false when ctx ends.
func (t *Tee) deliver(ctx context.Context, rec *spool.Record) bool {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := t.post(ctx, rec)
		if err == nil {
			t.m.sent.Inc()
			if attempt > 1 {
				t.log.Info("raw tee delivered after retries", "attempts", attempt)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		t.m.failed.Inc()
		if attempt == 1 || attempt%20 == 0 {
			t.log.Warn("raw tee delivery failed; retrying until it succeeds", "attempt", attempt, "err", err)
		}
		if backoff.Sleep(ctx, delay) != nil {
			return false
		}
		delay = min(2*delay, t.MaxBackoff)
	}
}

func (t *Tee) post(ctx context.Context, rec *spool.Record) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.target, bytes.NewReader(rec.Body))
	if err != nil {
		return err
	}
	for k, v := range rec.Header {
		req.Header.Set(k, v)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return redact.Error(err) // it quotes the URL, query and all
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", t.display, resp.Status)
	}
	return nil
}

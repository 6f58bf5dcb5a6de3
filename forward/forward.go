// Package forward is sgload forward: it sends the spool's SendGrid events to
// Segment's HTTP API (or any Segment-compatible endpoint, such as
// RudderStack's) as track calls named after the Segment Spec's email
// events, from the spool, with its own cursor: a batch is acknowledged (the
// cursor moves past it) only after the endpoint answered 2xx, and a resend
// after a crash carries the same messageIds, which Segment deduplicates.
//
// It honours Segment's limits itself: 32,000 bytes per call, 500,000 bytes
// and 2,500 calls per batch (the figures of Segment's own Go library), 50
// requests a second for partner sources, and retries 429 and 5xx with
// backoff. Custom args travel as properties; a call's userId comes from a
// custom arg, else from a mapping of addresses to user ids (a file, or the
// synced contacts' external_id), else, if asked, an anonymousId. (Segment's analytics-go library batches and
// retries in the background and drops what it could not send, which does
// not fit a cursor that may only move after a 2xx.)
package forward

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/sgload/sgload/internal/backoff"
	"github.com/sgload/sgload/internal/redact"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool"
)

// DefaultEndpoint is Segment's US API (EU workspaces use
// https://events.eu1.segmentapis.com).
const DefaultEndpoint = "https://api.segment.io"

// Options configure forward.
type Options struct {
	Spool    spool.Dir
	WriteKey string
	Endpoint string
	Mapping
	// Rate is requests per second at most (50, Segment's limit for partner sources).
	Rate float64
	// MaxBatchBytes and MaxBatchCalls bound a batch (500,000 bytes, the
	// whole request body; 2,500 calls).
	MaxBatchBytes int
	MaxBatchCalls int
	// MaxRetries of one batch before giving up (10); the cursor stays.
	MaxRetries int
	// Follow keeps running, looking for new events every Interval.
	Follow   bool
	Interval time.Duration
	HTTP     *http.Client
	Logger   *slog.Logger
	// Registerer, when set, gets forward's metrics.
	Registerer prometheus.Registerer
	Progress   func(Summary)
}

// Summary is what a run did.
type Summary struct {
	Sent    int64            `json:"sent"`
	Batches int64            `json:"batches"`
	Retries int64            `json:"retries"`
	Skipped map[string]int64 `json:"skipped"`
	// UserIDs counts the calls sent by where their userId came from
	// (custom_arg, mapping) or anonymous.
	UserIDs map[string]int64 `json:"user_ids"`
	// LagBytes is how much of the spool is still ahead of the cursor.
	LagBytes int64   `json:"lag_bytes"`
	Seconds  float64 `json:"seconds"`
}

// batchEnvelope is the most a batch body holds besides its calls and
// their commas: {"batch":[ and ],"sentAt":"<RFC 3339 time, at most 30
// bytes>"}.
const batchEnvelope = len(`{"batch":[`) + len(`],"sentAt":""}`) + len("2006-01-02T15:04:05.999999999Z")

// Errors a caller branches on.
var (
	ErrRejected = errors.New("the endpoint rejected a batch")
	ErrAuth     = errors.New("the endpoint refused the write key")
)

type forwarder struct {
	o       Options
	log     *slog.Logger
	f       *spool.Follower
	sum     Summary
	batch   [][]byte
	sources []string // where each call's userId came from
	size    int
	// pace spaces requests at Rate a second (a burst of one: Segment
	// counts requests per second, so none are saved up while idle).
	pace *rate.Limiter
	m    *metrics
}

type metrics struct {
	sent    prometheus.Counter
	skipped *prometheus.CounterVec
	retries prometheus.Counter
	lag     prometheus.GaugeFunc
}

// Run forwards everything after the cursor (and, with Follow, what arrives
// later) until ctx ends.
func Run(ctx context.Context, o Options) (*Summary, error) {
	start := time.Now()
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	o.Endpoint = strings.TrimRight(o.Endpoint, "/")
	if o.WriteKey == "" {
		return nil, errors.New("no write key")
	}
	if o.Rate <= 0 {
		o.Rate = 50
	}
	if o.MaxBatchBytes <= 0 || o.MaxBatchBytes > MaxBatchBytes {
		o.MaxBatchBytes = MaxBatchBytes
	}
	if o.MaxBatchCalls <= 0 {
		o.MaxBatchCalls = 2500
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 10
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: time.Minute}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	lock, err := o.Spool.Lock(spool.LockForward)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	f, err := spool.OpenFollower(o.Spool, "forward")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fw := &forwarder{o: o, log: o.Logger, f: f, sum: Summary{Skipped: map[string]int64{}, UserIDs: map[string]int64{}},
		pace: rate.NewLimiter(rate.Limit(o.Rate), 1)}
	fw.registerMetrics()
	err = fw.run(ctx)
	fw.sum.LagBytes, _ = f.Lag()
	fw.sum.Seconds = time.Since(start).Seconds()
	return &fw.sum, err
}

func (fw *forwarder) registerMetrics() {
	fw.m = &metrics{
		sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "sgload_forward_sent_total", Help: "Track calls Segment acknowledged."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sgload_forward_skipped_total", Help: "Events not sent, by reason."}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "sgload_forward_retries_total", Help: "Batches sent again after a failure."}),
		lag: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sgload_forward_lag_bytes", Help: "Spool bytes not yet forwarded."},
			func() float64 { n, _ := fw.f.Lag(); return float64(n) }),
	}
	if fw.o.Registerer != nil {
		fw.o.Registerer.MustRegister(fw.m.sent, fw.m.skipped, fw.m.retries, fw.m.lag)
	}
}

func (fw *forwarder) run(ctx context.Context) error {
	var kr schema.KeyReader
	resume := fw.f.Position()
	var pending spool.Position // where the cursor goes once the batch is sent
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, after, err := fw.f.Next()
		if errors.Is(err, io.EOF) {
			if err := fw.send(ctx, pending); err != nil {
				return err
			}
			if !fw.o.Follow {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(fw.o.Interval):
			}
			// A newer contacts snapshot may have been synced meanwhile.
			if r, ok := fw.o.UserIDs.(refresher); ok {
				if err := r.Refresh(ctx); err != nil {
					fw.log.Warn("user id mapping not refreshed; keeping the one loaded", "err", err)
				}
			}
			continue
		}
		if err != nil {
			return err
		}
		start := fw.f.RecordStart()
		skip := 0
		if start.Segment == resume.Segment && start.Offset == resume.Offset {
			skip = resume.Event // the part of this record sent before a restart
		}
		events, ok := rec.Split()
		if !ok {
			fw.skip(SkipNotJSON, int64(rec.Events))
			events = nil
		}
		for i := skip; i < len(events); i++ {
			msg, reason, source := fw.o.message(&kr, events[i], rec.ReceivedAt)
			if reason != "" {
				fw.skip(reason, 1)
				continue
			}
			// The body is the calls, a comma after each but the last, and
			// the envelope: fw.size counts a comma after every call, so the
			// body stays at or under MaxBatchBytes.
			if len(fw.batch) > 0 && (fw.size+len(msg)+batchEnvelope > fw.o.MaxBatchBytes || len(fw.batch) >= fw.o.MaxBatchCalls) {
				if err := fw.send(ctx, spool.Position{Segment: start.Segment, Offset: start.Offset, Event: i}); err != nil {
					return err
				}
			}
			fw.batch = append(fw.batch, msg)
			fw.sources = append(fw.sources, source)
			fw.size += len(msg) + 1
		}
		pending = after
	}
}

func (fw *forwarder) skip(reason string, n int64) {
	fw.sum.Skipped[reason] += n
	fw.m.skipped.WithLabelValues(reason).Add(float64(n))
}

// send posts the batch, retrying, then moves the cursor to pos. With no
// batch (everything since was skipped) it only moves the cursor.
func (fw *forwarder) send(ctx context.Context, pos spool.Position) error {
	if len(fw.batch) == 0 {
		if pos == (spool.Position{}) || pos == fw.f.Stored() {
			return nil
		}
		return fw.f.Commit(pos)
	}
	var body bytes.Buffer
	body.WriteString(`{"batch":[`)
	body.Write(bytes.Join(fw.batch, []byte(",")))
	fmt.Fprintf(&body, `],"sentAt":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
	if body.Len() > fw.o.MaxBatchBytes { // cannot happen: run keeps room for the envelope
		return fmt.Errorf("batch of %d bytes, over the %d limit", body.Len(), fw.o.MaxBatchBytes)
	}
	delay := time.Second
	for attempt := 0; ; attempt++ {
		if err := fw.pace.Wait(ctx); err != nil {
			return err
		}
		retryAfter, err := fw.post(ctx, body.Bytes())
		if err == nil {
			break
		}
		if errors.Is(err, ErrRejected) || errors.Is(err, ErrAuth) || ctx.Err() != nil || attempt >= fw.o.MaxRetries {
			return err
		}
		fw.sum.Retries++
		fw.m.retries.Inc()
		wait := delay
		if retryAfter > 0 {
			wait = retryAfter
		}
		fw.log.Warn("batch not accepted; retrying", "attempt", attempt+1, "wait", wait.String(), "err", err)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
		delay = min(2*delay, time.Minute)
	}
	n := int64(len(fw.batch))
	fw.sum.Sent += n
	fw.sum.Batches++
	fw.m.sent.Add(float64(n))
	for _, src := range fw.sources {
		fw.sum.UserIDs[src]++
	}
	fw.batch, fw.sources, fw.size = fw.batch[:0], fw.sources[:0], 0
	if err := fw.f.Commit(pos); err != nil {
		return err
	}
	if fw.o.Progress != nil {
		fw.o.Progress(fw.sum)
	}
	return nil
}

// post sends one batch; for a 429 it also returns how long to wait.
func (fw *forwarder) post(ctx context.Context, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fw.o.Endpoint+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return 0, redact.Error(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(fw.o.WriteKey+":")))
	req.Header.Set("User-Agent", "sgload")
	resp, err := fw.o.HTTP.Do(req)
	if err != nil {
		return 0, redact.Error(err) // it quotes the endpoint, user info and query
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2000))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return 0, nil
	case resp.StatusCode == 401 || resp.StatusCode == 403:
		return 0, fmt.Errorf("%w: HTTP %d", ErrAuth, resp.StatusCode)
	case resp.StatusCode == 429:
		var wait time.Duration
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			wait = time.Duration(s) * time.Second
		}
		return wait, fmt.Errorf("HTTP 429: %s", strings.TrimSpace(string(msg)))
	case resp.StatusCode >= 500:
		return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return 0, fmt.Errorf("%w: HTTP %d: %s", ErrRejected, resp.StatusCode, strings.TrimSpace(string(msg)))
}

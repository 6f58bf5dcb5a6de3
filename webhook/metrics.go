package webhook

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests     *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	refused      *prometheus.CounterVec
	events       prometheus.Counter
	bytes        prometheus.Counter
	spilled      prometheus.Counter
	latency      prometheus.Histogram
	tokens       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, h *Handler) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sgload_webhook_requests_total", Help: "Webhook requests by HTTP status."}, []string{"status"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sgload_webhook_auth_failures_total", Help: "Webhook requests refused by authentication, by method."}, []string{"method"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sgload_webhook_refused_total",
			Help: "Webhook and token requests refused for lack of capacity or by policy, by reason: memory, unauthenticated, in_flight (503); slow_body (408); network (403)."},
			[]string{"reason"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_webhook_events_total", Help: "Events accepted (durable in the spool)."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_webhook_bytes_total", Help: "Body bytes accepted (durable in the spool)."}),
		spilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_webhook_spilled_bodies_total", Help: "Bodies of senders not yet authenticated that waited for their signature check on disk."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sgload_webhook_request_seconds",
			Help:    "Webhook request handling time, body read to durable acknowledgement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sgload_oauth_token_requests_total",
			Help: "Requests to the OAuth token endpoint by result: issued, invalid_client, invalid_request, unsupported_grant_type, throttled."},
			[]string{"result"}),
	}
	for _, method := range []string{"url_token", "oauth", "signature"} {
		m.authFailures.WithLabelValues(method)
	}
	for _, r := range []string{refusedMemory, refusedUnauth, refusedInFlight, refusedSlow, refusedNetwork} {
		m.refused.WithLabelValues(r)
	}
	for _, r := range []string{"issued", "invalid_client", "invalid_request", "unsupported_grant_type", "throttled"} {
		m.tokens.WithLabelValues(r)
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sgload_webhook_body_memory_bytes",
			Help: "Request bodies held in memory now (limit: --max-body-memory)."},
			func() float64 { return float64(h.mem.used.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sgload_webhook_unauthenticated_bytes",
			Help: "Bytes held now, in memory or on disk, for senders not yet authenticated (limit: --max-unauthenticated-bytes)."},
			func() float64 { return float64(h.unauth.used.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sgload_webhook_unauthenticated_requests",
			Help: "Webhook requests in flight whose sender is not yet authenticated."},
			func() float64 { return float64(h.unauthReqs.Load()) }),
	}
	reg.MustRegister(append(gauges, m.requests, m.authFailures, m.refused, m.events, m.bytes, m.spilled, m.latency, m.tokens)...)
	return m
}

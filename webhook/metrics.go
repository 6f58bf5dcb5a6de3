package webhook

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests     *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	events       prometheus.Counter
	bytes        prometheus.Counter
	latency      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sgload_webhook_requests_total", Help: "Webhook requests by HTTP status."}, []string{"status"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sgload_webhook_auth_failures_total", Help: "Webhook requests refused by authentication, by method."}, []string{"method"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_webhook_events_total", Help: "Events accepted (durable in the spool)."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_webhook_bytes_total", Help: "Body bytes accepted (durable in the spool)."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sgload_webhook_request_seconds",
			Help:    "Webhook request handling time, body read to durable acknowledgement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	for _, method := range []string{"url_token", "oauth", "signature"} {
		m.authFailures.WithLabelValues(method)
	}
	reg.MustRegister(m.requests, m.authFailures, m.events, m.bytes, m.latency)
	return m
}

// Package jobmetrics keeps the Prometheus metrics of sgload's batch jobs
// (flush, sync, and compaction once it lands): when each last succeeded,
// and what its last run did. sgload run serves them on /metrics; a job run
// from cron writes them as a node_exporter textfile (--metrics-file),
// carrying the previous run's values over so the last success time
// survives a failed run and the totals keep counting.
package jobmetrics

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Result is what one run of a job did.
type Result struct {
	OK       bool
	At       time.Time // when it ended
	Duration time.Duration
	Rows     int64 // rows (or objects) written
	Bytes    int64 // bytes written
}

// Metrics are the job metrics on one registry, labelled by job.
type Metrics struct {
	lastSuccess, lastRun, duration, rows, bytes *prometheus.GaugeVec
	runs                                        *prometheus.CounterVec
	rowsTotal, bytesTotal                       *prometheus.CounterVec
}

// Metric names, for dashboards and alerts (README, Metrics).
const (
	LastSuccess = "sgload_job_last_success_timestamp_seconds"
	LastRun     = "sgload_job_last_run_timestamp_seconds"
	Duration    = "sgload_job_last_duration_seconds"
	Rows        = "sgload_job_last_rows"
	Bytes       = "sgload_job_last_bytes"
	Runs        = "sgload_job_runs_total"
	RowsTotal   = "sgload_job_rows_total"
	BytesTotal  = "sgload_job_bytes_total"
)

// New registers the job metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"job"})
	}
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"job"}, labels...))
	}
	m := &Metrics{
		lastSuccess: g(LastSuccess, "Unix time the job last finished without error."),
		lastRun:     g(LastRun, "Unix time the job last finished, with or without error."),
		duration:    g(Duration, "Seconds the last run took."),
		rows:        g(Rows, "Rows (or objects) the last run wrote."),
		bytes:       g(Bytes, "Bytes the last run wrote."),
		runs:        c(Runs, "Runs of the job, by result (success or failure).", "result"),
		rowsTotal:   c(RowsTotal, "Rows (or objects) written by all runs."),
		bytesTotal:  c(BytesTotal, "Bytes written by all runs."),
	}
	reg.MustRegister(m.lastSuccess, m.lastRun, m.duration, m.rows, m.bytes, m.runs, m.rowsTotal, m.bytesTotal)
	return m
}

// Record notes one run of job.
func (m *Metrics) Record(job string, r Result) {
	at := float64(r.At.UnixNano()) / 1e9
	m.lastRun.WithLabelValues(job).Set(at)
	m.duration.WithLabelValues(job).Set(r.Duration.Seconds())
	m.rows.WithLabelValues(job).Set(float64(r.Rows))
	m.bytes.WithLabelValues(job).Set(float64(r.Bytes))
	m.rowsTotal.WithLabelValues(job).Add(float64(r.Rows))
	m.bytesTotal.WithLabelValues(job).Add(float64(r.Bytes))
	result := "failure"
	if r.OK {
		result = "success"
		m.lastSuccess.WithLabelValues(job).Set(at)
	}
	m.runs.WithLabelValues(job, result).Inc()
	m.runs.WithLabelValues(job, otherResult(result)).Add(0) // both series exist from the first run
}

func otherResult(r string) string {
	if r == "success" {
		return "failure"
	}
	return "success"
}

// Load carries over the values a previous run wrote to the textfile at
// path: the last success time (a failed run keeps it) and the totals (so
// they count across runs, as counters should). A missing file is a first
// run.
func (m *Metrics) Load(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read metrics file %s: %w", path, err)
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(f)
	if err != nil {
		return fmt.Errorf("read metrics file %s: %w", path, err)
	}
	each := func(name string, fn func(labels map[string]string, v float64)) {
		mf := mfs[name]
		if mf == nil {
			return
		}
		for _, mt := range mf.GetMetric() {
			fn(labelMap(mt), value(mt))
		}
	}
	each(LastSuccess, func(l map[string]string, v float64) { m.lastSuccess.WithLabelValues(l["job"]).Set(v) })
	each(Runs, func(l map[string]string, v float64) { m.runs.WithLabelValues(l["job"], l["result"]).Add(v) })
	each(RowsTotal, func(l map[string]string, v float64) { m.rowsTotal.WithLabelValues(l["job"]).Add(v) })
	each(BytesTotal, func(l map[string]string, v float64) { m.bytesTotal.WithLabelValues(l["job"]).Add(v) })
	return nil
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// WriteTextfile records r for job in the textfile at path, the
// node_exporter textfile collector's convention: name it *.prom in the
// collector's folder; it is written to a temporary file in the same folder
// and renamed, so the collector never reads half a file.
func WriteTextfile(path, job string, r Result) error {
	reg := prometheus.NewRegistry()
	m := New(reg)
	loadErr := m.Load(path)
	if loadErr != nil {
		// A damaged file would otherwise stop every later run from
		// reporting: start anew (the totals restart) and say so.
		reg = prometheus.NewRegistry()
		m = New(reg)
	}
	m.Record(job, r)
	if err := prometheus.WriteToTextfile(path, reg); err != nil {
		return fmt.Errorf("write metrics file %s: %w", path, err)
	}
	if loadErr != nil {
		return fmt.Errorf("%w; wrote it anew", loadErr)
	}
	return nil
}

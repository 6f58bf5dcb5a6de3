package spool

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	fsync       prometheus.Histogram
	batch       prometheus.Histogram
	records     prometheus.Counter
	bytes       prometheus.Counter
	sealed      prometheus.Counter
	writeErrors prometheus.Counter
	quarantined prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Writer) *metrics {
	m := &metrics{
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sgload_spool_fsync_seconds",
			Help:    "Time to write and fsync one group commit.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sgload_spool_group_commit_records",
			Help:    "Records (POSTs) made durable by one fsync.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_spool_records_total", Help: "Records (accepted POSTs) appended to the spool."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_spool_bytes_total", Help: "Bytes appended to spool segments."}),
		sealed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_spool_segments_sealed_total", Help: "Segments sealed (renamed from .open to .ndjson)."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_spool_write_errors_total", Help: "Group commits that failed to write or fsync."}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sgload_spool_quarantined_total", Help: "Bodies written to the quarantine folder."}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.fsync, m.batch, m.records, m.bytes, m.sealed, m.writeErrors, m.quarantined,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sgload_spool_open_segment_age_seconds",
			Help: "Age of the segment being written (0 when none is open).",
		}, s.openAge),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sgload_spool_sealed_backlog_bytes",
			Help: "Bytes in sealed event segments not yet flushed to the bucket.",
		}, func() float64 { _, n, _ := s.dir.Backlog(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sgload_spool_quarantine_files",
			Help: "Files in the quarantine folder.",
		}, func() float64 { return float64(s.QuarantineCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sgload_spool_free_bytes",
			Help: "Free bytes on the spool's file system.",
		}, func() float64 { f, _ := s.freeBytes(); return float64(f) }),
	)
	return m
}

// Package rewrite replaces a partition's files with new ones, committed with
// the same care as flush: compaction (few large files, sorted by time,
// duplicates across nodes removed), retention (old partitions deleted) and
// erasure (a person's rows removed, package spool scrubbing the spool's
// copy). One protocol serves all three, per partition:
//
//  1. Lease: the partition is taken with a lease object written only if
//     absent (layout.AcquireLease); it expires if its holder dies.
//  2. Read and merge: the inputs (committed files older than MinAge) are
//     read into a bounded external sort (sorted runs on local disk, merged
//     16 at a time), duplicates dropped by schema's rule, and, for forget,
//     the named addresses' rows.
//  3. Upload the outputs (rw-<id>-<n>.parquet), then write the rewrite
//     manifest naming inputs and outputs (layout.Rewrite): the commit
//     point. A kill before it leaves outputs no manifest commits; the next
//     holder of the lease deletes them.
//  4. Delete the inputs once the grace has passed (at once for forget),
//     then move the manifest to rewrites/done/.
//
// While inputs and outputs both exist, the views (which dedupe with the
// same rule) show every event once.
package rewrite

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/sgload/sgload/bucket"
)

// Options configure a rewrite run.
type Options struct {
	Bucket *bucket.Bucket
	Prefix string
	// TargetFileBytes is the size outputs roll at (256 MiB); partitions
	// with fewer than two files below it are left alone.
	TargetFileBytes int64
	// RowGroupRows and RowGroupBytes size the outputs' row groups (64k
	// rows, 32 MiB of rows in memory).
	RowGroupRows  int
	RowGroupBytes int64
	// MinAge leaves files younger than this for the next run (1 h), so a
	// rewrite never touches what a flush has just written.
	MinAge time.Duration
	// Grace is how long replaced inputs stay before they are deleted (24 h).
	Grace time.Duration
	// RetainDays, when positive, deletes event partitions whose day is
	// older than this many days.
	RetainDays int
	// MemoryBytes bounds the rows held for sorting (48 MiB).
	MemoryBytes int64
	// LeaseTTL is how long a partition lease lasts unless renewed (10 min).
	LeaseTTL time.Duration
	// Holder names this process in leases.
	Holder string
	// WorkDir holds sort runs and outputs before upload (os.TempDir()).
	WorkDir  string
	Version  string
	Logger   *slog.Logger
	Progress func(Progress)
	// Crash, when set, is called after each step; an error stops the run
	// there (the crash tests).
	Crash func(Step) error
	Now   func() time.Time
}

func (o *Options) defaults() {
	if o.TargetFileBytes <= 0 {
		o.TargetFileBytes = 256 << 20
	}
	if o.RowGroupRows <= 0 {
		o.RowGroupRows = 64 << 10
	}
	if o.RowGroupBytes <= 0 {
		o.RowGroupBytes = 32 << 20
	}
	if o.MinAge < 0 {
		o.MinAge = 0
	}
	if o.Grace < 0 {
		o.Grace = 0
	}
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = 48 << 20
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 10 * time.Minute
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if o.WorkDir == "" {
		o.WorkDir = os.TempDir()
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Crash == nil {
		o.Crash = func(Step) error { return nil }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Defaults of the flags that must be chosen, not zero.
const (
	DefaultMinAge = time.Hour
	// DefaultGrace is 24 h: BigQuery stops a query after 6 h and Snowflake
	// and DuckDB queries run minutes, so a day covers any query that began
	// before the commit with margin, and gives Snowflake external tables
	// refreshed daily the time to forget the old files. The cost is a
	// partition's bytes twice for a day.
	DefaultGrace = 24 * time.Hour
)

// Step names a point of the rewrite protocol, after what it names is done.
type Step string

// The protocol's steps, in order.
const (
	StepLeased          Step = "lease-taken"
	StepOutputsUploaded Step = "outputs-uploaded"
	StepCommitted       Step = "manifest-written"
	StepInputsDeleted   Step = "inputs-deleted"
	StepFinished        Step = "manifest-done"
)

// Steps are the protocol's steps, in order.
var Steps = []Step{StepLeased, StepOutputsUploaded, StepCommitted, StepInputsDeleted, StepFinished}

// Progress is reported while a run works.
type Progress struct {
	Partition  string
	Done, Of   int // partitions
	RowsRead   int64
	Elapsed    time.Duration
	BytesInput int64
}

// Summary is what a run did.
type Summary struct {
	Partitions    int      `json:"partitions"`
	Retired       int      `json:"retired_partitions"`
	Leased        int      `json:"leased_elsewhere"`
	FilesBefore   int      `json:"files_before"`
	FilesAfter    int      `json:"files_after"`
	BytesBefore   int64    `json:"bytes_before"`
	BytesAfter    int64    `json:"bytes_after"`
	RowsIn        int64    `json:"rows_in"`
	RowsOut       int64    `json:"rows_out"`
	Duplicates    int64    `json:"duplicates"`
	Removed       int64    `json:"removed"`
	InputsDeleted int      `json:"inputs_deleted"`
	Orphans       int      `json:"orphans_deleted"`
	Rewrites      []string `json:"rewrites"`
	Seconds       float64  `json:"seconds"`
}

func (s *Summary) add(r *rewritten) {
	s.Partitions++
	s.FilesBefore += len(r.m.Inputs)
	s.FilesAfter += len(r.m.Outputs)
	for _, in := range r.m.Inputs {
		s.BytesBefore += in.Bytes
	}
	for _, f := range r.m.Outputs {
		s.BytesAfter += f.Bytes
	}
	s.RowsIn += r.m.RowsIn
	s.RowsOut += r.m.RowsOut
	s.Duplicates += r.m.Duplicates
	s.Removed += r.m.Removed
	s.Rewrites = append(s.Rewrites, r.key)
}

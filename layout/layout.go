// Package layout is the bucket's side of sgload: where every object lives
// under a destination's prefix, the manifests that commit them, the
// destination's id, and the listings that views, verify and flush read.
//
//	<prefix>/events/event_type=<table>/dt=YYYY-MM-DD/part-<node>-<plan>-<nnnn>.parquet
//	<prefix>/objects/<collection>/dt=YYYY-MM-DD/part-<node>-<plan>-<nnnn>.parquet
//	<prefix>/_sgload/manifests/<node>/<plan>.json     the commit record of each plan
//	<prefix>/_sgload/destination.json                 the destination's id
//	<prefix>/_sgload/probe/<node>-<random>             flush's storage preflight (deleted)
//
// event_type and dt are hive partition keys in the path only, never columns
// in the files (BigQuery refuses them twice), so one external table covers
// every event type, including types that appear later.
package layout

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// PartitionKey names the event table in object paths.
const PartitionKey = "event_type"

// Folders under the prefix.
const (
	EventsDir    = "events"
	ObjectsDir   = "objects"
	MetaDir      = "_sgload"
	ManifestsDir = MetaDir + "/manifests"
)

// Join joins key parts under prefix (which may be empty).
func Join(prefix string, parts ...string) string {
	p := path.Join(append([]string{prefix}, parts...)...)
	return strings.TrimPrefix(p, "/")
}

// Kind is what a table holds: events (webhook) or objects (sync).
type Kind uint8

const (
	Events Kind = iota
	Objects
)

// Dir is the kind's folder under the prefix.
func (k Kind) Dir() string {
	if k == Objects {
		return ObjectsDir
	}
	return EventsDir
}

// Partition is a table and a day: the unit of a folder in the bucket.
type Partition struct {
	Kind  Kind
	Table string
	Day   int32 // days since the Unix epoch (UTC)
}

// Date is the partition's day as YYYY-MM-DD (its dt).
func (p Partition) Date() string { return DayString(p.Day) }

// Less orders partitions by kind, table, day.
func (p Partition) Less(o Partition) bool {
	if p.Kind != o.Kind {
		return p.Kind < o.Kind
	}
	if p.Table != o.Table {
		return p.Table < o.Table
	}
	return p.Day < o.Day
}

// Folder is the partition's folder under prefix.
func (p Partition) Folder(prefix string) string {
	if p.Kind == Objects {
		return Join(prefix, ObjectsDir, p.Table, "dt="+p.Date())
	}
	return Join(prefix, EventsDir, PartitionKey+"="+p.Table, "dt="+p.Date())
}

// ObjectKey names file n of a plan's partition.
func ObjectKey(prefix string, p Partition, node, plan string, n int) string {
	return Join(p.Folder(prefix), fmt.Sprintf("part-%s-%s-%04d.parquet", node, plan, n))
}

// ManifestKey names a plan's manifest.
func ManifestKey(prefix, node, plan string) string {
	return Join(prefix, ManifestsDir, node, plan+".json")
}

// ProbeKey names a preflight probe object.
func ProbeKey(prefix, name string) string { return Join(prefix, MetaDir, "probe", name) }

// Day is the day of t (Unix microseconds), floored, since the epoch.
func Day(micros int64) int32 {
	const perDay = 86400_000_000
	q := micros / perDay
	if micros%perDay != 0 && micros < 0 {
		q--
	}
	return int32(q)
}

// DayString is day as YYYY-MM-DD.
func DayString(day int32) string {
	return time.Unix(int64(day)*86400, 0).UTC().Format("2006-01-02")
}

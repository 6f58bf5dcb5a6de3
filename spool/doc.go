// Package spool owns sgload's local, durable copy of everything received:
// the segment files, their on-disk record format, the group-committed writer
// that serve appends to, recovery of a segment torn by a crash, the reader
// that flush and forward use, and the quarantine for bodies that cannot be
// parsed.
//
// The promise: when Append returns without error, the record is on disk
// (written and fsynced, in a file whose directory entry is fsynced), and it
// stays readable, exactly once, through any crash and restart.
//
// Layout under the spool root:
//
//	events/                 <node>-<first sequence, 16 hex>.ndjson sealed segments; one .open being written
//	objects/<collection>/   snapshot segments written by sync
//	quarantine/             bodies from authenticated senders that could not be parsed, with their headers
//	done/                   segments already committed to the bucket (same sub-folders), kept for a while
//	state/                  node id, sequence high-water mark, locks, flush journal
package spool

// Package spool owns sgload's local, durable copy of everything received:
// every path under the spool folder (Dir), the segment files and each step
// of their life (sealed, taken by a flush plan, done, pruned), their
// on-disk record format, the group-committed Writer that serve appends to,
// recovery of a segment torn by a crash, the readers and followers that
// flush, forward and the tee use, the named locks, the one sequencer, and
// the quarantine for bodies that cannot be parsed.
//
// A spool is handed to other packages in one of two forms: a Dir, opened
// with Open (it must exist) or Create, for everything that reads it or
// takes a lock; and the Writer, which only serve holds.
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
//	state/                  node id, sequence high-water marks, locks, flush journal, dedupe
//	                        histories, sync cursors, follower cursors (see Dir's methods)
package spool

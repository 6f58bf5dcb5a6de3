// Package loader is sgload flush: it turns sealed spool segments into
// partitioned Parquet objects in a bucket, exactly once, whatever crashes in
// between, and sgload verify, which checks that promise. Where objects and
// manifests go is package layout's; the spool's folders and a segment's
// moves are package spool's.
//
// The commit protocol, one plan at a time (each step a Step, where the
// crash tests stop a flush):
//
//  1. Plan: pick sealed segments (up to MaxPlanBytes) and journal the plan
//     (state/flush/<plan>.plan.json, fsynced) before the bucket is touched.
//     The plan id and so every object name derive from the plan.
//  2. Keys: read every event once for its dedupe keys and decide which
//     events are duplicates (package dedupe); the plan's keys are saved as
//     pending history.
//  3. Convert and upload: events become rows of per-(table, day) Parquet
//     files in a local work folder, rolled on encoded size; each object name
//     is journaled (fsynced) before its upload starts.
//  4. Commit: the manifest (<prefix>/_sgload/manifests/<node>/<plan>.json)
//     is written last. It is the commit point: a plan with a manifest is
//     done, one without is redone from scratch after deleting every object
//     its journal names.
//  5. Finish: the pending dedupe history becomes history, the segments move
//     to done/, the journal is removed.
//
// Flush holds the spool's flush lock throughout, so one flush runs per spool.
package loader

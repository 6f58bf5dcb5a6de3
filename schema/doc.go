// Package schema owns the typed columns of every table sgload writes, and
// how messy SendGrid input maps onto them: which JSON shapes each column
// accepts, what is coerced (a category string to a list, "1" to true, a
// millisecond timestamp to microseconds) and what is reported in _errors.
//
// It is the one source of truth for the Parquet writer, the SQL views and
// the docs. Rows are collected in a Batch, a columnar buffer that the
// Parquet writer turns into one row group.
package schema

// Package parquetfile writes schema.Batch row groups as Parquet files that
// every engine reads the same way: microsecond UTC timestamps, standard
// three-level lists, every column of the table present with its declared
// type (all-null ones too), zstd pages with statistics.
//
// It writes with parquet-go (NewWriter). An Apache Arrow writer of the same
// contract lives in the tests (arrow_test.go, NewArrowWriter), out of the
// binary, so that the choice stays measured: BenchmarkWriters compares the
// two on the same batches, and BENCHMARKS.md records the result.
package parquetfile

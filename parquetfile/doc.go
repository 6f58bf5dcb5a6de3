// Package parquetfile writes schema.Batch row groups as Parquet files that
// every engine reads the same way: microsecond UTC timestamps, standard
// three-level lists, every column of the table present with its declared
// type (all-null ones too), zstd pages with statistics.
//
// It has two implementations of the same Writer contract: parquet-go
// (NewWriter, what sgload uses) and Apache Arrow (NewArrowWriter). Both are
// kept so that the choice stays measured: BenchmarkWriters compares them on
// the same batches, and BENCHMARKS.md records the result.
package parquetfile

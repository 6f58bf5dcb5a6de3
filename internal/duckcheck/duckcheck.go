// Package duckcheck runs DuckDB (through its Go binding) in tests: every
// Parquet file sgload writes is read back by DuckDB, and the DuckDB views
// are run for real.
package duckcheck

import (
	"database/sql"
	"fmt"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" driver
)

// Open returns an in-memory DuckDB database, closed when the test ends.
func Open(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one connection keeps session state (views, settings)
	t.Cleanup(func() { db.Close() })
	return db
}

// Exec runs statements.
func Exec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("duckdb: %v\n%s", err, query)
	}
}

// Rows returns every row of a query, each as a slice of values.
func Rows(t testing.TB, db *sql.DB, query string, args ...any) [][]any {
	t.Helper()
	_, out := Query(t, db, query, args...)
	return out
}

// Query returns a query's column names and every row, each as a slice of
// values.
func Query(t testing.TB, db *sql.DB, query string, args ...any) ([]string, [][]any) {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("duckdb: %v\n%s", err, query)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("duckdb: %v\n%s", err, query)
	}
	return cols, out
}

// Int returns the single integer a query yields.
func Int(t testing.TB, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	rows := Rows(t, db, query, args...)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("duckdb: %q returned %d rows, want one value", query, len(rows))
	}
	switch v := rows[0][0].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case uint64:
		return int64(v)
	case nil:
		return 0
	default:
		t.Fatalf("duckdb: %q returned %T %v, want an integer", query, v, fmt.Sprint(v))
	}
	return 0
}

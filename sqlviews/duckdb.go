package sqlviews

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sgload/sgload/schema"
)

type duckdb struct{}

func (duckdb) typ(k schema.Kind) string {
	return map[schema.Kind]string{schema.String: "VARCHAR", schema.Int64: "BIGINT", schema.Bool: "BOOLEAN",
		schema.Timestamp: "TIMESTAMPTZ", schema.StringList: "VARCHAR[]"}[k]
}

// ident quotes with double quotes. DuckDB matches quoted names without
// regard to case, so users need no quotes except for reserved words.
func (duckdb) ident(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func (duckdb) qualify() string { return "" }

func (d duckdb) starExcept(cols ...string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = d.ident(c)
	}
	return "* EXCLUDE (" + strings.Join(q, ", ") + ")"
}

func (duckdb) listLen(expr string) string { return "LEN(" + expr + ")" }

func (duckdb) sortedList(expr string) string {
	return fmt.Sprintf("LIST(%s ORDER BY %s) FILTER (WHERE %s IS NOT NULL)", expr, expr, expr)
}

func (d duckdb) emptyList(k schema.Kind) string { return "CAST([] AS " + d.typ(k) + "[])" }

func (duckdb) listJSON(expr string) string { return "CAST(TO_JSON(" + expr + ") AS VARCHAR)" }

func (duckdb) epochSeconds(expr string) string { return "CAST(FLOOR(EPOCH(" + expr + ")) AS BIGINT)" }

func (duckdb) intDiv(expr string, n int) string { return fmt.Sprintf("(%s // %d)", expr, n) }

func (d duckdb) unnest(rel, expr string) (string, string, string) {
	// GENERATE_SUBSCRIPTS numbers the items from 1, in the order UNNEST
	// yields them (two set-returning functions in one SELECT advance together).
	return rel, "UNNEST(" + expr + ")", "GENERATE_SUBSCRIPTS(" + expr + ", 1) - 1"
}

// url is where DuckDB finds path inside the bucket.
func (duckdb) url(l location, path string) string {
	switch l.scheme {
	case "file":
		return filepath.ToSlash(filepath.Join(l.path, filepath.FromSlash(path)))
	case "azblob":
		return "az://" + l.bucket + "/" + path
	}
	return l.scheme + "://" + l.bucket + "/" + path
}

func (d duckdb) preamble(g *gen) ([]stmt, error) {
	out := []stmt{{sql: "CREATE SCHEMA IF NOT EXISTS " + g.schemaName()}}
	l := g.loc
	const creds = "Credentials come from the environment through DuckDB's credential chain; none are written here.\nDuckDB downloads the extension on first use (needs network access)."
	switch l.scheme {
	case "s3":
		opts := []string{"TYPE s3", "PROVIDER credential_chain"}
		if l.region != "" {
			opts = append(opts, "REGION '"+l.region+"'")
		}
		if l.endpoint != "" {
			opts = append(opts, "ENDPOINT '"+l.endpoint+"'")
			if !l.secure {
				opts = append(opts, "USE_SSL false")
			}
		}
		if l.pathURL {
			opts = append(opts, "URL_STYLE 'path'")
		}
		out = append(out, stmt{sql: "INSTALL aws"}, stmt{sql: "LOAD aws"}, stmt{sql: "INSTALL httpfs"}, stmt{sql: "LOAD httpfs"},
			stmt{comment: creds, sql: fmt.Sprintf("CREATE OR REPLACE SECRET %s (%s)", d.ident("sgload_s3"), strings.Join(opts, ", "))})
	case "gs":
		out = append(out, stmt{sql: "INSTALL httpfs"}, stmt{sql: "LOAD httpfs"},
			stmt{comment: creds + "\nGCS is read through its S3-compatible API with HMAC keys (GCS_ACCESS_KEY_ID, GCS_SECRET_ACCESS_KEY).",
				sql: fmt.Sprintf("CREATE OR REPLACE SECRET %s (TYPE gcs, PROVIDER credential_chain)", d.ident("sgload_gcs"))})
	case "azblob":
		opts := []string{"TYPE azure", "PROVIDER credential_chain"}
		if l.account != "" {
			opts = append(opts, "ACCOUNT_NAME '"+l.account+"'")
		}
		out = append(out, stmt{sql: "INSTALL azure"}, stmt{sql: "LOAD azure"},
			stmt{comment: creds, sql: fmt.Sprintf("CREATE OR REPLACE SECRET %s (%s)", d.ident("sgload_azure"), strings.Join(opts, ", "))})
	}
	return out, nil
}

func (d duckdb) rawEvents(g *gen) ([]stmt, error) {
	var cols []string
	for _, c := range schema.EventColumns() {
		cols = append(cols, fmt.Sprintf("  CAST(%s AS %s) AS %s", d.ident(c.Name), d.typ(c.Kind), d.ident(c.Name)))
	}
	cols = append(cols, g.sql("  CAST({event_type} AS VARCHAR) AS {event_type}"), g.sql("  CAST({dt} AS DATE) AS {dt}"))
	glob := d.url(g.loc, under(g.o.Prefix, "events", "*", "*", "*.parquet"))
	return []stmt{{
		comment: "All event files, every type, with the declared column types; event_type and dt come from the path.\nColumns are matched by name: a file written before a column existed reads it as NULL.",
		sql: fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\nSELECT\n%s\nFROM READ_PARQUET('%s', HIVE_PARTITIONING = TRUE, HIVE_TYPES = {'event_type': VARCHAR, 'dt': DATE}, UNION_BY_NAME = TRUE)",
			g.table("events_raw"), strings.Join(cols, ",\n"), sqlString(glob)),
	}}, nil
}

func (duckdb) rawStar() string { return "*" }

func (d duckdb) rawObjects(g *gen, t *schema.Table, name string) ([]stmt, error) {
	var cols []string
	for _, c := range t.Columns {
		cols = append(cols, fmt.Sprintf("  CAST(%s AS %s) AS %s", d.ident(c.Name), d.typ(c.Kind), d.ident(c.Name)))
	}
	cols = append(cols, g.sql("  CAST({dt} AS DATE) AS {dt}"))
	glob := d.url(g.loc, under(g.o.Prefix, "objects", t.Name, "*", "*.parquet"))
	return []stmt{{sql: fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\nSELECT\n%s\nFROM READ_PARQUET('%s', HIVE_PARTITIONING = TRUE, HIVE_TYPES = {'dt': DATE}, UNION_BY_NAME = TRUE)",
		g.table(name), strings.Join(cols, ",\n"), sqlString(glob))}}, nil
}

// sqlString escapes s for a single-quoted SQL literal.
func sqlString(s string) string { return strings.ReplaceAll(s, "'", "''") }

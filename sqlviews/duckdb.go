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

func (duckdb) ident(name string) string { return `"` + name + `"` }

func (d duckdb) table(g *gen, name string) string { return g.o.Schema + "." + d.ident(name) }

func (duckdb) qualify() string { return "" }

func (duckdb) starExcept(cols ...string) string {
	return "* EXCLUDE (" + strings.Join(cols, ", ") + ")"
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
	out := []stmt{{sql: "CREATE SCHEMA IF NOT EXISTS " + g.o.Schema}}
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
			stmt{comment: creds, sql: fmt.Sprintf("CREATE OR REPLACE SECRET sgload_s3 (%s)", strings.Join(opts, ", "))})
	case "gs":
		out = append(out, stmt{sql: "INSTALL httpfs"}, stmt{sql: "LOAD httpfs"},
			stmt{comment: creds + "\nGCS is read through its S3-compatible API with HMAC keys (GCS_ACCESS_KEY_ID, GCS_SECRET_ACCESS_KEY).",
				sql: "CREATE OR REPLACE SECRET sgload_gcs (TYPE gcs, PROVIDER credential_chain)"})
	case "azblob":
		opts := []string{"TYPE azure", "PROVIDER credential_chain"}
		if l.account != "" {
			opts = append(opts, "ACCOUNT_NAME '"+l.account+"'")
		}
		out = append(out, stmt{sql: "INSTALL azure"}, stmt{sql: "LOAD azure"},
			stmt{comment: creds, sql: fmt.Sprintf("CREATE OR REPLACE SECRET sgload_azure (%s)", strings.Join(opts, ", "))})
	}
	return out, nil
}

func (d duckdb) rawEvents(g *gen) ([]stmt, error) {
	var cols []string
	for _, c := range schema.EventColumns() {
		cols = append(cols, fmt.Sprintf("  CAST(%s AS %s) AS %s", d.ident(c.Name), d.typ(c.Kind), d.ident(c.Name)))
	}
	cols = append(cols, "  CAST(event_type AS VARCHAR) AS event_type", "  CAST(dt AS DATE) AS dt")
	glob := d.url(g.loc, under(g.o.Prefix, "events", "*", "*", "*.parquet"))
	return []stmt{{
		comment: "All event files, every type, with the declared column types; event_type and dt come from the path.",
		sql: fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\nSELECT\n%s\nFROM read_parquet('%s', hive_partitioning = true, hive_types = {'event_type': VARCHAR, 'dt': DATE})",
			d.table(g, "events_raw"), strings.Join(cols, ",\n"), glob),
	}}, nil
}

func (duckdb) rawStar() string { return "*" }

func (d duckdb) rawObjects(g *gen, t *schema.Table, name string) ([]stmt, error) {
	var cols []string
	for _, c := range t.Columns {
		cols = append(cols, fmt.Sprintf("  CAST(%s AS %s) AS %s", d.ident(c.Name), d.typ(c.Kind), d.ident(c.Name)))
	}
	cols = append(cols, "  CAST(dt AS DATE) AS dt")
	glob := d.url(g.loc, under(g.o.Prefix, "objects", t.Name, "*", "*.parquet"))
	return []stmt{{sql: fmt.Sprintf("CREATE OR REPLACE VIEW %s AS\nSELECT\n%s\nFROM read_parquet('%s', hive_partitioning = true, hive_types = {'dt': DATE})",
		d.table(g, name), strings.Join(cols, ",\n"), glob)}}, nil
}

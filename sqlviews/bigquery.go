package sqlviews

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sgload/sgload/schema"
)

type bigquery struct{}

func (bigquery) typ(k schema.Kind) string {
	return map[schema.Kind]string{schema.String: "STRING", schema.Int64: "INT64", schema.Bool: "BOOL",
		schema.Timestamp: "TIMESTAMP", schema.StringList: "ARRAY<STRING>"}[k]
}

// ident quotes with backticks. BigQuery column names are case-insensitive,
// so users need them only for reserved words.
func (bigquery) ident(name string) string { return "`" + name + "`" }

// qualify: BigQuery wants a WHERE, GROUP BY or HAVING beside QUALIFY.
func (bigquery) qualify() string { return "\nWHERE TRUE" }

func (b bigquery) starExcept(cols ...string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = b.ident(c)
	}
	return "* EXCEPT (" + strings.Join(q, ", ") + ")"
}

func (bigquery) listLen(expr string) string { return "ARRAY_LENGTH(" + expr + ")" }

// sortedList sorts in a subquery: ARRAY_AGG(... ORDER BY) is valid
// BigQuery, but not in the grammar of the parser the tests check it with.
func (b bigquery) sortedList(expr string) string {
	v := b.ident("v")
	return fmt.Sprintf("ARRAY(SELECT %s FROM UNNEST(ARRAY_AGG(%s)) AS %s WHERE %s IS NOT NULL ORDER BY %s)", v, expr, v, v, v)
}

func (b bigquery) emptyList(k schema.Kind) string { return "CAST([] AS ARRAY<" + b.typ(k) + ">)" }

func (bigquery) listJSON(expr string) string { return "TO_JSON_STRING(" + expr + ")" }

func (bigquery) epochSeconds(expr string) string { return "UNIX_SECONDS(" + expr + ")" }

func (bigquery) intDiv(expr string, n int) string { return fmt.Sprintf("DIV(%s, %d)", expr, n) }

func (b bigquery) unnest(rel, expr string) (string, string, string) {
	return fmt.Sprintf("%s CROSS JOIN UNNEST(%s) AS %s WITH OFFSET AS %s", rel, expr, b.ident("item"), b.ident("item_index")),
		b.ident("item"), b.ident("item_index")
}

func (bigquery) uri(l location, path string) (string, error) {
	switch l.scheme {
	case "gs":
		return "gs://" + l.bucket + "/" + path, nil
	case "s3":
		return "s3://" + l.bucket + "/" + path, nil
	case "azblob":
		if l.account == "" {
			return "", errors.New("azblob bucket: set AZURE_STORAGE_ACCOUNT (or storage_account in the URL) to name the account")
		}
		return fmt.Sprintf("azure://%s.blob.core.windows.net/%s/%s", l.account, l.bucket, path), nil
	}
	return "", fmt.Errorf("BigQuery cannot read %s buckets; flush to gs:// (or s3:// and azblob:// through BigQuery Omni)", l.scheme)
}

// connectionLocation is the location part of a BigQuery connection id:
// project.location.connection, location.connection, or
// projects/P/locations/L/connections/C.
func connectionLocation(conn string) string {
	if strings.HasPrefix(conn, "projects/") {
		parts := strings.Split(conn, "/")
		for i := 0; i+1 < len(parts); i++ {
			if parts[i] == "locations" {
				return parts[i+1]
			}
		}
		return ""
	}
	parts := strings.Split(conn, ".")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

// location is where the dataset must be: --location, or the connection's.
// The external tables of a dataset in another location than their bucket
// (or connection) fail, so a mismatch is an error here rather than there.
func (b bigquery) location(g *gen) (string, error) {
	loc := g.o.Location
	if strings.ContainsAny(g.o.Connection, "`'\\\n ") {
		return "", fmt.Errorf("connection %q: not a BigQuery connection id", g.o.Connection)
	}
	if g.o.Connection != "" {
		conn := connectionLocation(g.o.Connection)
		if conn == "" {
			return "", fmt.Errorf("connection %q: name it project.location.connection (e.g. acme.aws-us-east-1.s3)", g.o.Connection)
		}
		if loc == "" {
			loc = conn
		} else if !strings.EqualFold(loc, conn) {
			return "", fmt.Errorf("location %q differs from the connection's (%s): BigQuery Omni needs the dataset in the connection's location", loc, conn)
		}
	}
	if loc != "" && strings.ContainsAny(loc, "'\\`\n") {
		return "", fmt.Errorf("location %q: not a BigQuery location", loc)
	}
	return loc, nil
}

func (b bigquery) preamble(g *gen) ([]stmt, error) {
	if g.loc.scheme != "gs" && g.o.Connection == "" {
		if _, err := b.uri(g.loc, ""); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("BigQuery reads %s buckets only through BigQuery Omni: pass --connection project.location.connection", g.loc.scheme)
	}
	loc, err := b.location(g)
	if err != nil {
		return nil, err
	}
	if loc == "" {
		return []stmt{{
			comment: "The dataset goes to BigQuery's default location (US). Its external tables must be in the\nbucket's location: for a bucket elsewhere (EU, a region), regenerate with --location.",
			sql:     "CREATE SCHEMA IF NOT EXISTS " + g.schemaName(),
		}}, nil
	}
	return []stmt{{
		comment: "The dataset is created in the bucket's (or the connection's) location, as its external tables must be.",
		sql:     fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s\nOPTIONS (location = '%s')", g.schemaName(), loc),
	}}, nil
}

func (b bigquery) rawEvents(g *gen) ([]stmt, error) {
	st, err := b.externalTable(g, "events_raw", schema.EventColumns(), []string{"event_type STRING", "dt DATE"}, "events")
	if err != nil {
		return nil, err
	}
	st.comment = "All event files, every type, with the schema declared (not inferred from one file).\nevent_type and dt are hive partition keys in the path: filter on them to prune files.\nNew files and new event types are visible at once; nothing to run after a flush."
	return []stmt{st}, nil
}

func (bigquery) rawStar() string { return "*" }

func (b bigquery) rawObjects(g *gen, t *schema.Table, name string) ([]stmt, error) {
	st, err := b.externalTable(g, name, t.Columns, []string{"dt DATE"}, "objects", t.Name)
	if err != nil {
		return nil, err
	}
	return []stmt{st}, nil
}

// externalTable declares a hive-partitioned Parquet external table over the
// files under the bucket path dirs, with the columns declared rather than
// inferred from one file. partitions are "name TYPE".
func (b bigquery) externalTable(g *gen, name string, cols []schema.Column, partitions []string, dirs ...string) (stmt, error) {
	files, err := b.uri(g.loc, under(g.o.Prefix, append(dirs, "*")...))
	if err != nil {
		return stmt{}, err
	}
	prefix, _ := b.uri(g.loc, under(g.o.Prefix, dirs...))
	conn := ""
	if g.o.Connection != "" {
		conn = "\nWITH CONNECTION `" + g.o.Connection + "`"
	}
	parts := make([]string, len(partitions))
	for i, p := range partitions {
		n, typ, _ := strings.Cut(p, " ")
		parts[i] = b.ident(n) + " " + typ
	}
	return stmt{sql: fmt.Sprintf(`CREATE OR REPLACE EXTERNAL TABLE %s (
%s
)
WITH PARTITION COLUMNS (
  %s
)%s
OPTIONS (
  format = 'PARQUET',
  uris = ['%s'],
  hive_partition_uri_prefix = '%s',
  require_hive_partition_filter = FALSE,
  enable_list_inference = TRUE
)`, g.table(name), strings.Join(columnDefs(b, cols), ",\n"), strings.Join(parts, ",\n  "), conn, sqlString(files), sqlString(prefix))}, nil
}

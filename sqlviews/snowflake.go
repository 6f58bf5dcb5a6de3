package sqlviews

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sgload/sgload/schema"
)

type snowflake struct{}

func (snowflake) typ(k schema.Kind) string {
	return map[schema.Kind]string{schema.String: "VARCHAR", schema.Int64: "NUMBER(38,0)", schema.Bool: "BOOLEAN",
		schema.Timestamp: "TIMESTAMP_TZ", schema.StringList: "ARRAY"}[k]
}

// ident quotes in upper case: Snowflake stores an unquoted name in upper
// case, so "EMAIL" is the column users query as email, unquoted; only a
// reserved word ("ROWS") needs its quotes in their queries too.
func (snowflake) ident(name string) string {
	return `"` + strings.ReplaceAll(strings.ToUpper(name), `"`, `""`) + `"`
}

func (snowflake) qualify() string { return "" }

func (s snowflake) starExcept(cols ...string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = s.ident(c)
	}
	return "* EXCLUDE (" + strings.Join(q, ", ") + ")"
}

func (snowflake) listLen(expr string) string { return "ARRAY_SIZE(" + expr + ")" }

// sortedList: Snowflake's ARRAY_AGG leaves NULLs out by itself, and
// ARRAY_SORT orders it (the parser the tests use has no WITHIN GROUP).
func (snowflake) sortedList(expr string) string {
	return "ARRAY_SORT(ARRAY_AGG(" + expr + "))"
}

func (snowflake) emptyList(schema.Kind) string { return "ARRAY_CONSTRUCT()" }

func (snowflake) listJSON(expr string) string { return "TO_JSON(" + expr + ")" }

func (snowflake) epochSeconds(expr string) string { return "DATE_PART(EPOCH_SECOND, " + expr + ")" }

func (snowflake) intDiv(expr string, n int) string { return fmt.Sprintf("TRUNC(%s / %d)", expr, n) }

func (s snowflake) unnest(rel, expr string) (string, string, string) {
	f := s.ident("item")
	return fmt.Sprintf("%s, LATERAL FLATTEN(INPUT => %s) AS %s", rel, expr, f), f + ".VALUE::VARCHAR", f + ".INDEX"
}

func (snowflake) stageURL(l location, prefix string) (string, error) {
	p := under(prefix) + "/"
	if p == "/" {
		p = ""
	}
	switch l.scheme {
	case "s3":
		return "s3://" + l.bucket + "/" + p, nil
	case "gs":
		return "gcs://" + l.bucket + "/" + p, nil
	case "azblob":
		if l.account == "" {
			return "", errors.New("azblob bucket: set AZURE_STORAGE_ACCOUNT (or storage_account in the URL) to name the account")
		}
		return fmt.Sprintf("azure://%s.blob.core.windows.net/%s/%s", l.account, l.bucket, p), nil
	}
	return "", fmt.Errorf("snowflake cannot read %s buckets; flush to s3://, gs:// or azblob://", l.scheme)
}

func (s snowflake) preamble(g *gen) ([]stmt, error) {
	u, err := s.stageURL(g.loc, g.o.Prefix)
	if err != nil {
		return nil, err
	}
	// Automatic refresh on GCS and Azure goes through a notification
	// integration (Pub/Sub, Event Grid) that each external table names;
	// S3 notifies the table's own SQS queue.
	if g.o.AutoRefresh && g.loc.scheme != "s3" && g.o.NotificationIntegration == "" {
		return nil, fmt.Errorf("--auto-refresh on a %s:// bucket needs the notification integration Snowflake receives its events through: pass --notification-integration", g.loc.scheme)
	}
	return []stmt{
		{sql: "CREATE SCHEMA IF NOT EXISTS " + g.schemaName()},
		{comment: "The stage reads the bucket through a storage integration an account admin creates once\n(docs/warehouses/snowflake.md); no credentials are written here.",
			sql: fmt.Sprintf("CREATE STAGE IF NOT EXISTS %s\n  URL = '%s'\n  STORAGE_INTEGRATION = %s\n  FILE_FORMAT = (TYPE = PARQUET)",
				g.table("sgload_stage"), sqlString(u), s.ident(g.o.StorageIntegration))},
	}, nil
}

// externalTable is CREATE EXTERNAL TABLE with its clauses in the order of
// Snowflake's grammar: columns, cloud provider parameters (INTEGRATION),
// PARTITION BY, LOCATION, AUTO_REFRESH, FILE_FORMAT.
func (s snowflake) externalTable(g *gen, name string, cols []string, partitions []string, dir string) []stmt {
	var clauses []string
	if g.o.AutoRefresh && g.loc.scheme != "s3" {
		clauses = append(clauses, fmt.Sprintf("INTEGRATION = '%s'", strings.ToUpper(g.o.NotificationIntegration)))
	}
	parts := make([]string, len(partitions))
	for i, p := range partitions {
		parts[i] = s.ident(p)
	}
	refresh := "FALSE"
	if g.o.AutoRefresh {
		refresh = "TRUE"
	}
	clauses = append(clauses,
		"PARTITION BY ("+strings.Join(parts, ", ")+")",
		"LOCATION = @"+g.table("sgload_stage")+"/"+dir,
		"AUTO_REFRESH = "+refresh,
		"FILE_FORMAT = (TYPE = PARQUET)")
	tbl := g.table(name)
	return []stmt{
		{sql: fmt.Sprintf("CREATE OR REPLACE EXTERNAL TABLE %s (\n%s\n)\n%s", tbl, strings.Join(cols, ",\n"), strings.Join(clauses, "\n"))},
		{sql: fmt.Sprintf("ALTER EXTERNAL TABLE %s REFRESH", tbl)},
	}
}

// column is a typed column expression over the row's VARIANT: the Parquet
// field's name is case-sensitive, so it stays as written.
func (s snowflake) column(c schema.Column) string {
	return fmt.Sprintf("  %s %s AS (VALUE:\"%s\"::%s)", s.ident(c.Name), s.typ(c.Kind), c.Name, s.typ(c.Kind))
}

var snowflakeDT = `  "DT" DATE AS (TO_DATE(SPLIT_PART(SPLIT_PART(METADATA$FILENAME, '/dt=', 2), '/', 1)))`

func (s snowflake) rawEvents(g *gen) ([]stmt, error) {
	cols := []string{
		`  "EVENT_TYPE" VARCHAR AS (SPLIT_PART(SPLIT_PART(METADATA$FILENAME, 'event_type=', 2), '/', 1))`,
		snowflakeDT,
	}
	for _, c := range schema.EventColumns() {
		cols = append(cols, s.column(c))
	}
	out := s.externalTable(g, "events_raw", cols, []string{"event_type", "dt"}, "events/")
	out[0].comment = "All event files, every type, with typed column expressions; event_type and dt come from the\nfile path and partition the table, so filters on them prune files."
	out[1].comment = "Run after each flush (or once, with AUTO_REFRESH = TRUE and event notifications set up):\nit registers the new files."
	return out, nil
}

// rawStar leaves out VALUE, the whole row as a VARIANT, which every
// external table has.
func (snowflake) rawStar() string { return "* EXCLUDE (VALUE)" }

func (s snowflake) rawObjects(g *gen, t *schema.Table, name string) ([]stmt, error) {
	cols := []string{snowflakeDT}
	for _, c := range t.Columns {
		cols = append(cols, s.column(c))
	}
	return s.externalTable(g, name, cols, []string{"dt"}, "objects/"+t.Name+"/"), nil
}

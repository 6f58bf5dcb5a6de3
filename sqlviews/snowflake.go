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

// ident leaves names unquoted: Snowflake folds them to upper case, so users
// query them without quotes. sgload's names avoid reserved words.
func (snowflake) ident(name string) string { return name }

func (snowflake) table(g *gen, name string) string { return g.o.Schema + "." + name }

func (snowflake) qualify() string { return "" }

func (snowflake) starExcept(cols ...string) string {
	return "* EXCLUDE (" + strings.Join(cols, ", ") + ")"
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
	return []stmt{
		{sql: "CREATE SCHEMA IF NOT EXISTS " + g.o.Schema},
		{comment: "The stage reads the bucket through a storage integration an account admin creates once\n(docs/warehouses/snowflake.md); no credentials are written here.",
			sql: fmt.Sprintf("CREATE STAGE IF NOT EXISTS %s\n  URL = '%s'\n  STORAGE_INTEGRATION = %s\n  FILE_FORMAT = (TYPE = PARQUET)",
				s.table(g, "sgload_stage"), u, g.o.StorageIntegration)},
	}, nil
}

func (s snowflake) rawEvents(g *gen) ([]stmt, error) {
	cols := []string{
		"  event_type VARCHAR AS (SPLIT_PART(SPLIT_PART(METADATA$FILENAME, 'event_type=', 2), '/', 1))",
		"  dt DATE AS (TO_DATE(SPLIT_PART(SPLIT_PART(METADATA$FILENAME, '/dt=', 2), '/', 1)))",
	}
	for _, c := range schema.EventColumns() {
		cols = append(cols, fmt.Sprintf("  %s %s AS (VALUE:\"%s\"::%s)", c.Name, s.typ(c.Kind), c.Name, s.typ(c.Kind)))
	}
	refresh := "FALSE"
	if g.o.AutoRefresh {
		refresh = "TRUE"
	}
	raw := s.table(g, "events_raw")
	return []stmt{
		{comment: "All event files, every type, with typed column expressions; event_type and dt come from the\nfile path and partition the table, so filters on them prune files.",
			sql: fmt.Sprintf("CREATE OR REPLACE EXTERNAL TABLE %s (\n%s\n)\nPARTITION BY (event_type, dt)\nLOCATION = @%s/events/\nFILE_FORMAT = (TYPE = PARQUET)\nAUTO_REFRESH = %s",
				raw, strings.Join(cols, ",\n"), s.table(g, "sgload_stage"), refresh)},
		{comment: "Run after each flush (or once, with AUTO_REFRESH = TRUE and event notifications set up):\nit registers the new files.",
			sql: fmt.Sprintf("ALTER EXTERNAL TABLE %s REFRESH", raw)},
	}, nil
}

// rawStar leaves out VALUE, the whole row as a VARIANT, which every
// external table has.
func (snowflake) rawStar() string { return "* EXCLUDE (VALUE)" }

func (s snowflake) rawObjects(g *gen, t *schema.Table, name string) ([]stmt, error) {
	cols := []string{"  dt DATE AS (TO_DATE(SPLIT_PART(SPLIT_PART(METADATA$FILENAME, '/dt=', 2), '/', 1)))"}
	for _, c := range t.Columns {
		cols = append(cols, fmt.Sprintf("  %s %s AS (VALUE:\"%s\"::%s)", c.Name, s.typ(c.Kind), c.Name, s.typ(c.Kind)))
	}
	refresh := "FALSE"
	if g.o.AutoRefresh {
		refresh = "TRUE"
	}
	tbl := s.table(g, name)
	return []stmt{
		{sql: fmt.Sprintf("CREATE OR REPLACE EXTERNAL TABLE %s (\n%s\n)\nPARTITION BY (dt)\nLOCATION = @%s/objects/%s/\nFILE_FORMAT = (TYPE = PARQUET)\nAUTO_REFRESH = %s",
			tbl, strings.Join(cols, ",\n"), s.table(g, "sgload_stage"), t.Name, refresh)},
		{sql: fmt.Sprintf("ALTER EXTERNAL TABLE %s REFRESH", tbl)},
	}, nil
}

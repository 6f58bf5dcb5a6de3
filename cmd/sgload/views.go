package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/sqlviews"
)

func viewsCommand() *cli.Command {
	return &cli.Command{
		Name:  "views",
		Usage: "print the SQL that puts warehouse tables and views over a bucket flush wrote",
		Description: "Prints complete, runnable SQL for DuckDB, BigQuery or Snowflake: external tables (or\n" +
			"read_parquet views) with the declared column types, a deduplicated view per event type,\n" +
			"activity (every event type, with Segment Spec names), message_status and recipient_status\n" +
			"(the latest state of each message and address) and the latest state of each object\n" +
			"collection. --naming segment or stitch adds the tables Segment's or Stitch's SendGrid\n" +
			"source gives, so saved queries run unchanged. Every name is quoted. docs/warehouses/ has a\n" +
			"page per warehouse. Credentials are never printed.",
		OnUsageError: onUsageError,
		Flags: append(bucketFlags(),
			&cli.StringFlag{Name: "dialect", EnvVars: []string{"SGLOAD_DIALECT"}, Usage: "duckdb, bigquery or snowflake"},
			&cli.StringFlag{Name: "schema", Aliases: []string{"dataset"}, Value: "sendgrid", EnvVars: []string{"SGLOAD_SCHEMA"},
				Usage: "BigQuery dataset (project.dataset), Snowflake schema (database.schema) or DuckDB schema to create"},
			&cli.StringSliceFlag{Name: "event-type", EnvVars: []string{"SGLOAD_EVENT_TYPES"},
				Usage: "an event type to give a view, besides SendGrid's documented ones and those found in the bucket"},
			&cli.BoolFlag{Name: "no-discover", EnvVars: []string{"SGLOAD_NO_DISCOVER"},
				Usage: "do not list the bucket for event types (when this machine has no access to it)"},
			&cli.StringFlag{Name: "naming", Value: string(sqlviews.NamingSgload), EnvVars: []string{"SGLOAD_NAMING"},
				Usage: "sgload, or segment (Segment's SendGrid tables and columns) or stitch (Stitch's data table) beside sgload's"},
			&cli.StringFlag{Name: "connection", EnvVars: []string{"SGLOAD_BQ_CONNECTION"},
				Usage: "BigQuery: connection for s3:// and azblob:// buckets (BigQuery Omni), project.location.connection"},
			&cli.StringFlag{Name: "location", EnvVars: []string{"SGLOAD_BQ_LOCATION"},
				Usage: "BigQuery: the dataset's location, the bucket's (EU, us-east4); with --connection, the connection's by default"},
			&cli.StringFlag{Name: "storage-integration", Value: "sgload_integration", EnvVars: []string{"SGLOAD_SF_STORAGE_INTEGRATION"},
				Usage: "Snowflake: storage integration for the stage"},
			&cli.BoolFlag{Name: "auto-refresh", EnvVars: []string{"SGLOAD_SF_AUTO_REFRESH"},
				Usage: "Snowflake: AUTO_REFRESH = TRUE on the external tables (needs event notifications)"},
			&cli.StringFlag{Name: "notification-integration", EnvVars: []string{"SGLOAD_SF_NOTIFICATION_INTEGRATION"},
				Usage: "Snowflake: with --auto-refresh on gs:// or azblob://, the notification integration (Pub/Sub, Event Grid)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, EnvVars: []string{"SGLOAD_OUTPUT"},
				Usage: "write the SQL to this file instead of stdout"},
		),
		Action: runViews,
	}
}

func runViews(c *cli.Context) error {
	dialect := sqlviews.Dialect(c.String("dialect"))
	if dialect == "" {
		return usageError(errors.New("--dialect is required"), "use --dialect duckdb, bigquery or snowflake")
	}
	if c.String("bucket") == "" {
		return usageError(errors.New("--bucket is required"), "the bucket URL flush writes to")
	}
	o := sqlviews.Options{
		Dialect: dialect, Bucket: c.String("bucket"), Prefix: prefix(c),
		Schema: c.String("schema"), EventTypes: c.StringSlice("event-type"), Naming: sqlviews.Naming(c.String("naming")),
		Connection: c.String("connection"), Location: c.String("location"),
		StorageIntegration: c.String("storage-integration"), AutoRefresh: c.Bool("auto-refresh"),
		NotificationIntegration: c.String("notification-integration"),
	}
	if !c.Bool("no-discover") {
		b, err := openExistingBucket(c.Context, c)
		if err != nil {
			return err
		}
		types, err := layout.EventTypes(c.Context, b, o.Prefix)
		var colls []string
		if err == nil {
			colls, err = layout.ObjectCollections(c.Context, b, o.Prefix)
		}
		_ = b.Close()
		if err != nil {
			return failure(err, "pass --no-discover to write the SQL without listing the bucket")
		}
		o.EventTypes = append(o.EventTypes, types...)
		o.Collections = colls
	}
	sql, err := sqlviews.Generate(o)
	if err != nil {
		return usageError(err, "see sgload views --help")
	}
	if p := c.String("output"); p != "" {
		// Whole or not at all: a half-written file would run half the views.
		if err := durable.WriteFile(p, sql, 0o644); err != nil {
			return failure(fmt.Errorf("write %s: %w", p, err), "")
		}
		return nil
	}
	if _, err := c.App.Writer.Write(sql); err != nil {
		return failure(fmt.Errorf("write SQL: %w", err), "")
	}
	return nil
}

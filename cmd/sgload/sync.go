package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/internal/redact"
	"github.com/sgload/sgload/objectsync"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/sendgrid"
	"github.com/sgload/sgload/spool"
)

func syncCommand() *cli.Command {
	return &cli.Command{
		Name:  "sync",
		Usage: "pull SendGrid objects (lists, contacts, suppressions, templates, ...) into the spool",
		Description: "Writes each collection's snapshot into the spool; the next flush turns it into a table\n" +
			"with _sequence, _sync_id and _synced_at, and the views show each object's latest state,\n" +
			"deletions included. A collection that fails does not stop the others.\n" +
			"Exit codes: 0 all synced, 3 some collections failed (named), 1 all failed, 2 bad flags,\n" +
			"4 another sync holds the spool's lock.\n\n" +
			"Collections: " + strings.Join(schema.CollectionNames(), ", "),
		OnUsageError: onUsageError,
		Flags: []cli.Flag{
			spoolFlag(),
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"SENDGRID_API_KEY"},
				Usage: "SendGrid API key with read access (prefer the environment variable; never printed)"},
			&cli.StringFlag{Name: "api-url", Value: sendgrid.DefaultBaseURL, EnvVars: []string{"SGLOAD_API_URL"},
				Usage: "SendGrid API base URL (https://api.eu.sendgrid.com for EU subusers)"},
			&cli.StringFlag{Name: "on-behalf-of", EnvVars: []string{"SGLOAD_ON_BEHALF_OF"},
				Usage: "sync a subuser's objects"},
			&cli.StringSliceFlag{Name: "collections", EnvVars: []string{"SGLOAD_COLLECTIONS"},
				Usage: "collections to sync, comma-separated (default: all)"},
			&cli.BoolFlag{Name: "full-refresh", EnvVars: []string{"SGLOAD_FULL_REFRESH"},
				Usage: "pull incremental collections (suppressions) in full, which shows their deletions"},
			&cli.DurationFlag{Name: "lookback", Value: 24 * time.Hour, EnvVars: []string{"SGLOAD_LOOKBACK"},
				Usage: "incremental pulls start this long before the previous sync started"},
			&cli.IntFlag{Name: "max-pages", Value: 100000, EnvVars: []string{"SGLOAD_MAX_PAGES"},
				Usage: "stop a collection that pages beyond this (a server that never stops)"},
			&cli.IntFlag{Name: "parallel", Value: 2, EnvVars: []string{"SGLOAD_PARALLEL"},
				Usage: "collections synced at once"},
			nodeFlag("node id (default: the spool's)"),
			jsonFlag("summary"),
			progressFlag(),
			&cli.DurationFlag{Name: "export-poll", Value: 5 * time.Second, EnvVars: []string{"SGLOAD_EXPORT_POLL"},
				Usage: "how often to ask whether the contacts export is ready"},
			metricsFileFlag("sync"),
		},
		Action: runSync,
	}
}

func runSync(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	log = log.With("component", "sync")
	api, err := sendgrid.New(c.String("api-url"), c.String("api-key"), c.String("on-behalf-of"), log)
	if err != nil {
		return usageError(err, "create a key with read access at https://app.sendgrid.com/settings/api_keys and export SENDGRID_API_KEY")
	}
	var cols []string // the flag library splits on commas and trims; "a,,b" leaves an empty one
	for _, x := range c.StringSlice("collections") {
		if x != "" {
			cols = append(cols, x)
		}
	}
	d, err := openSpool(c)
	if err != nil {
		return err
	}
	if err := checkKey(c, api, cols); err != nil {
		writeMetricsFile(c, "sync", syncResult(nil, err, 0))
		return err
	}
	o := objectsync.Options{
		Spool: d, Node: c.String("node"), Client: api, Collections: cols,
		FullRefresh: c.Bool("full-refresh"), Lookback: c.Duration("lookback"), MaxPages: c.Int("max-pages"),
		Parallel: c.Int("parallel"), PollInterval: c.Duration("export-poll"), Logger: log,
	}
	if showProgress(c) {
		line := stderrOf(c) // shared with the log, which ends the progress line first
		o.Progress = func(p objectsync.Progress) {
			text := fmt.Sprintf("%-28s %6d pages %9s rows", p.Collection, p.Pages, count(int64(p.Rows)))
			if p.Done {
				fmt.Fprintln(line, text+" done") // a finished collection keeps its line
				return
			}
			line.show(text + " ...")
		}
	}
	start := time.Now()
	sum, err := objectsync.Run(c.Context, o)
	if !busy(err) {
		writeMetricsFile(c, "sync", syncResult(sum, err, time.Since(start)))
	}
	switch {
	case errors.Is(err, objectsync.ErrUnknownCollection):
		return usageError(err, "")
	case errors.Is(err, spool.ErrBusy):
		return err // exitCode maps it
	case err != nil:
		return failure(err, "")
	}
	var rows int64
	for _, r := range sum.Results {
		rows += int64(r.Rows)
		if r.Err() != nil {
			fmt.Fprintf(c.App.ErrWriter, "error: %s: %s\n", r.Collection, r.Error)
			if r.Hint != "" {
				fmt.Fprintf(c.App.ErrWriter, "hint: %s\n", r.Hint)
			}
		}
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, sum); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.App.Writer, "synced %d of %d collections: %s objects; failed: %s\n",
			len(sum.Results)-len(sum.Failed), len(sum.Results), count(rows), orNone(sum.Failed))
	}
	switch {
	case len(sum.Failed) == 0:
		return nil
	case len(sum.Failed) == len(sum.Results):
		return &cliError{err: fmt.Errorf("every collection failed: %s", strings.Join(sum.Failed, ", ")), code: exitFailure}
	}
	return &cliError{err: fmt.Errorf("collections failed: %s", strings.Join(sum.Failed, ", ")), code: exitPartial,
		hint: "the other collections were synced; rerun to retry the failed ones"}
}

// checkKey checks the key and its scopes once, up front (one request,
// seconds): a refused key or a missing scope is a usage error (exit 2), an
// unreachable API a failure (exit 1), either long before the collections'
// retries would have given up.
func checkKey(c *cli.Context, api *sendgrid.Client, cols []string) error {
	err := objectsync.CheckKey(c.Context, api, cols)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, objectsync.ErrUnknownCollection):
		return usageError(err, "")
	case errors.Is(err, sendgrid.ErrUnauthorized):
		return usageError(err, "the key is wrong or revoked: create one with read access at https://app.sendgrid.com/settings/api_keys and export SENDGRID_API_KEY")
	case errors.Is(err, objectsync.ErrMissingScopes):
		return usageError(err, "give the key these scopes (Settings > API Keys > Edit), or leave those collections out with --collections")
	}
	return failure(fmt.Errorf("check the API key: %w", err),
		fmt.Sprintf("the SendGrid API at %s did not answer within %s: check the network, a proxy (HTTPS_PROXY) or --api-url", redact.URL(c.String("api-url")), sendgrid.ScopesTimeout))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

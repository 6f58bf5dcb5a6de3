package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/backfill"
	"github.com/sgload/sgload/sendgrid"
)

func backfillCommand() *cli.Command {
	return &cli.Command{
		Name:  "backfill",
		Usage: "fetch past events from SendGrid's Email Logs API into the spool: history, and the gaps of an outage",
		Description: "Searches the Email Logs API for the messages of --since..--until (by windows small enough for\n" +
			"its 1,000-message answers), fetches each message's events and spools them as events with\n" +
			"their own sg_event_id: the next flush merges them with what the webhook delivered, each event\n" +
			"once, with _source = logs_api. --gaps fetches only the hours in which the spool received far\n" +
			"fewer webhook events than usual (an outage longer than SendGrid's 24 h of retries). A rerun\n" +
			"goes on where a stopped one was. Needs the Email Logs add-on and a key with its read scope.\n" +
			"Exit codes: 0 done, 1 failed (rerun), 2 bad flags or no Email Logs access, 4 another\n" +
			"backfill holds the spool's lock.",
		OnUsageError: onUsageError,
		Flags: []cli.Flag{
			spoolFlag(),
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"SENDGRID_API_KEY"},
				Usage: "SendGrid API key with Email Logs read access (prefer the environment variable; never printed)"},
			&cli.StringFlag{Name: "api-url", Value: sendgrid.DefaultBaseURL, EnvVars: []string{"SGLOAD_API_URL"},
				Usage: "SendGrid API base URL (https://api.eu.sendgrid.com for EU subusers)"},
			&cli.TimestampFlag{Name: "since", Layout: time.RFC3339, EnvVars: []string{"SGLOAD_BACKFILL_SINCE"},
				Usage: "fetch events from this time on (RFC 3339; default: 72 h ago)"},
			&cli.TimestampFlag{Name: "until", Layout: time.RFC3339, EnvVars: []string{"SGLOAD_BACKFILL_UNTIL"},
				Usage: "fetch events before this time (default: now)"},
			&cli.BoolFlag{Name: "gaps", EnvVars: []string{"SGLOAD_BACKFILL_GAPS"},
				Usage: "fetch only the hours in which the webhook delivered far fewer events than usual"},
			&cli.Float64Flag{Name: "gap-ratio", Value: 0.1, EnvVars: []string{"SGLOAD_BACKFILL_GAP_RATIO"},
				Usage: "with --gaps, an hour is a gap when it received fewer events than this times the median hour"},
			&cli.DurationFlag{Name: "lookback", Value: 72 * time.Hour, EnvVars: []string{"SGLOAD_BACKFILL_LOOKBACK"},
				Usage: "search messages created this long before --since too (opens and clicks come days later)"},
			&cli.BoolFlag{Name: "dry-run", EnvVars: []string{"SGLOAD_DRY_RUN"},
				Usage: "search and count, but write nothing to the spool"},
			nodeFlag("node id (default: the spool's)"),
			jsonFlag("summary"),
			progressFlag(),
		},
		Action: runBackfill,
	}
}

func runBackfill(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	log = log.With("component", "backfill")
	d, err := openSpool(c)
	if err != nil {
		return err
	}
	api, err := sendgrid.New(c.String("api-url"), c.String("api-key"), "", log)
	if err != nil {
		return usageError(err, "create a key with Email Logs read access and export SENDGRID_API_KEY")
	}
	now := time.Now()
	o := backfill.Options{Spool: d, Client: api, Gaps: c.Bool("gaps"), GapRatio: c.Float64("gap-ratio"),
		Lookback: c.Duration("lookback"), DryRun: c.Bool("dry-run"), Node: c.String("node"), Logger: log,
		Since: now.Add(-72 * time.Hour), Until: now}
	if t := c.Timestamp("since"); t != nil {
		o.Since = *t
	}
	if t := c.Timestamp("until"); t != nil {
		o.Until = *t
	}
	if !o.Since.Before(o.Until) {
		return usageError(fmt.Errorf("--since %s is not before --until %s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339)), "")
	}
	var prog *progressLine
	if showProgress(c) {
		prog = &progressLine{line: stderrOf(c)}
		o.Progress = func(p backfill.Progress) {
			prog.show(fmt.Sprintf("searched to %s of %s: %s messages, %s events", p.WindowEnd.Format(time.RFC3339),
				p.Of.Format(time.RFC3339), count(int64(p.Messages)), count(int64(p.Events))))
		}
	}
	sum, err := backfill.Run(c.Context, o)
	prog.done()
	if err != nil {
		if errors.Is(err, backfill.ErrAccess) {
			return usageError(err, "Email Logs needs its add-on on the account and a key with its read scope (email logs); check both in SendGrid's settings")
		}
		return failure(err, "rerun sgload backfill: it goes on where it stopped")
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, sum)
	}
	verb := "backfilled"
	if sum.DryRun {
		verb = "dry run: would backfill"
	}
	fmt.Fprintf(c.App.Writer, "%s %s events of %d time ranges from %s messages (%d search windows); %s spooled in %d segments; run sgload flush to load them\n",
		verb, count(int64(sum.Kept)), len(sum.Ranges), count(int64(sum.Messages)), sum.Windows, count(int64(sum.Spooled)), sum.Segments)
	return nil
}

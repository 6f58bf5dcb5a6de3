package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/forward"
	"github.com/sgload/sgload/spool"
)

func forwardCommand() *cli.Command {
	return &cli.Command{
		Name:  "forward",
		Usage: "send the spool's events to Segment (or a Segment-compatible API) as Spec email events",
		Description: "Maps delivered/open/click/bounce/spamreport/unsubscribe/group_unsubscribe to the Segment\n" +
			"Spec's Email Delivered, Email Opened, Email Link Clicked, Email Bounced, Email Marked as Spam\n" +
			"and Unsubscribed track calls, with userId from a custom arg you put on each mail (else from\n" +
			"--user-id-map or the synced contacts' external_id), custom args as properties. Reads the\n" +
			"spool with its own cursor (flush keeps segments until forward has passed them) and moves it\n" +
			"only after a 2xx; a resend carries the same messageId. Exit codes: 0 done, 1 failed (rerun\n" +
			"resumes), 2 bad flags, 4 another forward holds the spool's lock.",
		OnUsageError: onUsageError,
		Flags: []cli.Flag{
			spoolFlag(),
			&cli.StringFlag{Name: "write-key", EnvVars: []string{"SGLOAD_SEGMENT_WRITE_KEY"},
				Usage: "Segment source write key (prefer the environment variable; never printed)"},
			&cli.StringFlag{Name: "endpoint", Value: forward.DefaultEndpoint, EnvVars: []string{"SGLOAD_SEGMENT_ENDPOINT"},
				Usage: "Segment-compatible API (https://events.eu1.segmentapis.com for EU workspaces, RudderStack's data plane URL)"},
			&cli.StringFlag{Name: "user-id-arg", Value: "user_id", EnvVars: []string{"SGLOAD_USER_ID_ARG"},
				Usage: "custom arg (unique arg) holding the recipient's user id"},
			&cli.StringFlag{Name: "user-id-map", EnvVars: []string{"SGLOAD_USER_ID_MAP"},
				Usage: "CSV file of email,user_id rows: the userId of events without the custom arg"},
			&cli.BoolFlag{Name: "user-id-from-contacts", EnvVars: []string{"SGLOAD_USER_ID_FROM_CONTACTS"},
				Usage: "take the userId of events without the custom arg from the synced contacts' external_id (mc_contacts; the spool's newest snapshot, or the bucket's with --bucket)"},
			&cli.BoolFlag{Name: "anonymous", EnvVars: []string{"SGLOAD_ANONYMOUS"},
				Usage: "send events without a userId with an anonymousId derived from the email, instead of skipping them"},
			&cli.StringFlag{Name: "other-events", EnvVars: []string{"SGLOAD_OTHER_EVENTS"},
				Usage: `name for event types with no Spec event, %s = the type (e.g. "SendGrid %s"); empty skips them`},
			&cli.Float64Flag{Name: "rate", Value: 50, EnvVars: []string{"SGLOAD_SEGMENT_RATE"},
				Usage: "requests per second at most (Segment allows partner sources 50)"},
			&cli.IntFlag{Name: "batch-size", Value: 2500, EnvVars: []string{"SGLOAD_SEGMENT_BATCH_SIZE"},
				Usage: "calls per batch at most (Segment accepts 2,500 calls and 500,000 bytes a batch)"},
			&cli.BoolFlag{Name: "follow", EnvVars: []string{"SGLOAD_FOLLOW"},
				Usage: "keep running and forward new events as they arrive"},
			&cli.DurationFlag{Name: "interval", Value: 10 * time.Second, EnvVars: []string{"SGLOAD_FOLLOW_INTERVAL"},
				Usage: "with --follow, how often to look for new events"},
			&cli.StringFlag{Name: "metrics-addr", EnvVars: []string{"SGLOAD_METRICS_ADDR"},
				Usage: "with --follow, serve Prometheus metrics here (e.g. :9465)"},
			&cli.StringFlag{Name: "bucket", EnvVars: []string{"SGLOAD_BUCKET"},
				Usage: "with --user-id-from-contacts: read the contacts from the bucket flush commits to, not the spool"},
			&cli.StringFlag{Name: "prefix", EnvVars: []string{"SGLOAD_PREFIX"}, Usage: "key prefix inside --bucket"},
			jsonFlag("summary"),
		},
		Action: runForward,
	}
}

func runForward(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	log = log.With("component", "forward")
	if c.String("write-key") == "" {
		return usageError(errors.New("no write key"), "set SGLOAD_SEGMENT_WRITE_KEY to the Segment source's write key")
	}
	d, err := openSpool(c)
	if err != nil {
		return err
	}
	ids, closeIDs, err := userIDs(c, d)
	if err != nil {
		return err
	}
	defer closeIDs()
	o := forward.Options{
		Spool: d, WriteKey: c.String("write-key"), Endpoint: c.String("endpoint"),
		Mapping: forward.Mapping{UserIDArg: c.String("user-id-arg"), UserIDs: ids, Anonymous: c.Bool("anonymous"), OtherEvents: c.String("other-events")},
		Rate:    c.Float64("rate"), Follow: c.Bool("follow"), Interval: c.Duration("interval"), Logger: log,
		MaxBatchCalls: min(c.Int("batch-size"), 2500),
	}
	if addr := c.String("metrics-addr"); addr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		o.Registerer = reg
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return failure(fmt.Errorf("--metrics-addr: %w", err), "pick a free address")
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("metrics listening", "addr", ln.Addr().String())
	}
	sum, err := forward.Run(c.Context, o)
	if err != nil && !(o.Follow && errors.Is(err, c.Context.Err())) {
		switch {
		case errors.Is(err, spool.ErrBusy):
			return err // exitCode maps it
		case errors.Is(err, forward.ErrAuth):
			return failure(err, "check SGLOAD_SEGMENT_WRITE_KEY: it is the write key of the Segment source")
		}
		return failure(err, "rerun: forward resumes at its cursor, and resent calls keep their messageId")
	}
	if sum == nil {
		return nil
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, sum)
	}
	var skipped []string
	for r, n := range sum.Skipped {
		skipped = append(skipped, fmt.Sprintf("%s %s", count(n), r))
	}
	sort.Strings(skipped)
	var sources []string
	for s, n := range sum.UserIDs {
		sources = append(sources, fmt.Sprintf("%s %s", count(n), s))
	}
	sort.Strings(sources)
	fmt.Fprintf(c.App.Writer, "forwarded %s events in %d batches (%d retried); userId from: %s; skipped: %s; %s behind\n",
		count(sum.Sent), sum.Batches, sum.Retries, orNone(sources), orNone(skipped), size(sum.LagBytes))
	return nil
}

// userIDs is the mapping --user-id-map and --user-id-from-contacts ask for
// (nil for none), loaded now so that a bad file or a missing snapshot stops
// forward before it sends anything.
func userIDs(c *cli.Context, d spool.Dir) (forward.UserIDs, func(), error) {
	var chain []forward.UserIDs
	closer := func() {}
	if p := c.String("user-id-map"); p != "" {
		m, err := forward.LoadUserIDFile(p)
		if err != nil {
			return nil, closer, usageError(err, "the file holds email,user_id rows (CSV), one per address")
		}
		chain = append(chain, m)
	}
	if c.Bool("user-id-from-contacts") {
		contacts := &forward.Contacts{Spool: d}
		if c.String("bucket") != "" {
			b, err := openBucket(c.Context, c)
			if err != nil {
				return nil, closer, err
			}
			contacts.Bucket, contacts.Prefix = b, prefix(c)
			closer = func() { _ = b.Close() }
		}
		if err := contacts.Refresh(c.Context); err != nil {
			if errors.Is(err, forward.ErrNoContacts) {
				return nil, closer, usageError(err, "run sgload sync --collections mc_contacts (and flush, for --bucket) first")
			}
			return nil, closer, failure(fmt.Errorf("load contacts: %w", err), "")
		}
		chain = append(chain, contacts)
	}
	if len(chain) == 0 {
		return nil, closer, nil
	}
	return forward.Chain(chain...), closer, nil
}

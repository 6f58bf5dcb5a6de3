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
			"and Unsubscribed track calls, with userId from a custom arg you put on each mail. Reads the\n" +
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
			&cli.BoolFlag{Name: "anonymous", EnvVars: []string{"SGLOAD_ANONYMOUS"},
				Usage: "send events without that arg with an anonymousId derived from the email, instead of skipping them"},
			&cli.StringFlag{Name: "other-events", EnvVars: []string{"SGLOAD_OTHER_EVENTS"},
				Usage: `name for event types with no Spec event, %s = the type (e.g. "SendGrid %s"); empty skips them`},
			&cli.Float64Flag{Name: "rate", Value: 50, EnvVars: []string{"SGLOAD_SEGMENT_RATE"},
				Usage: "requests per second at most (Segment allows partner sources 50)"},
			&cli.IntFlag{Name: "batch-size", Value: 2500, EnvVars: []string{"SGLOAD_SEGMENT_BATCH_SIZE"},
				Usage: "calls per batch at most (Segment accepts 2,500 and 500 KB)"},
			&cli.BoolFlag{Name: "follow", EnvVars: []string{"SGLOAD_FOLLOW"},
				Usage: "keep running and forward new events as they arrive"},
			&cli.DurationFlag{Name: "interval", Value: 10 * time.Second, EnvVars: []string{"SGLOAD_FOLLOW_INTERVAL"},
				Usage: "with --follow, how often to look for new events"},
			&cli.StringFlag{Name: "metrics-addr", EnvVars: []string{"SGLOAD_METRICS_ADDR"},
				Usage: "with --follow, serve Prometheus metrics here (e.g. :9465)"},
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
	o := forward.Options{
		Spool: d, WriteKey: c.String("write-key"), Endpoint: c.String("endpoint"),
		Mapping: forward.Mapping{UserIDArg: c.String("user-id-arg"), Anonymous: c.Bool("anonymous"), OtherEvents: c.String("other-events")},
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
	fmt.Fprintf(c.App.Writer, "forwarded %s events in %d batches (%d retried); skipped: %s; %s behind\n",
		count(sum.Sent), sum.Batches, sum.Retries, orNone(skipped), size(sum.LagBytes))
	return nil
}

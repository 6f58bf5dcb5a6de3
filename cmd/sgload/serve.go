package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/status"
	"github.com/sgload/sgload/webhook"
)

func spoolFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "spool", Value: "sgload-spool", EnvVars: []string{"SGLOAD_SPOOL"},
		Usage: "spool folder on local disk (serve creates it; the other commands need it to exist)"}
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "receive SendGrid Event Webhook POSTs into the spool",
		Description: "Answers 200 only once a POST's events are fsynced in the spool. Authenticate with\n" +
			"SendGrid's Signed Event Webhook (--signing-key), OAuth 2.0 (--oauth-client-id/-secret)\n" +
			"and/or secret URL tokens (--url-token); every method configured must pass.\n\n" +
			"Endpoints: POST /webhook/sendgrid, POST /webhook/sendgrid/{token}, POST /oauth/token,\n" +
			"GET /healthz, GET /readyz, GET /metrics, GET /status (the status page).",
		OnUsageError: onUsageError,
		Flags:        serveFlags(),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			return runServer(c, log.With("component", "serve"), nil, status.Options{})
		},
	}
}

func serveFlags() []cli.Flag {
	return []cli.Flag{
		spoolFlag(),
		&cli.StringFlag{Name: "addr", Value: ":8080", EnvVars: []string{"SGLOAD_ADDR"},
			Usage: "listen address"},
		nodeFlag("node id in file names and the _node column (default: kept in the spool, first taken from the host name)"),
		&cli.StringSliceFlag{Name: "signing-key", EnvVars: []string{"SGLOAD_SIGNING_KEYS"}, Category: "Authentication:",
			Usage: "Signed Event Webhook verification key (base64), repeatable or comma-separated"},
		&cli.DurationFlag{Name: "signature-max-age", Value: 25 * time.Hour, EnvVars: []string{"SGLOAD_SIGNATURE_MAX_AGE"}, Category: "Authentication:",
			Usage: "refuse signatures with an older timestamp (SendGrid retries for 24h)"},
		&cli.StringFlag{Name: "oauth-client-id", EnvVars: []string{"SGLOAD_OAUTH_CLIENT_ID"}, Category: "Authentication:",
			Usage: "OAuth client id SendGrid uses at POST /oauth/token"},
		&cli.StringFlag{Name: "oauth-client-secret", EnvVars: []string{"SGLOAD_OAUTH_CLIENT_SECRET"}, Category: "Authentication:",
			Usage: "OAuth client secret (prefer the environment variable)"},
		&cli.DurationFlag{Name: "oauth-token-ttl", Value: time.Hour, EnvVars: []string{"SGLOAD_OAUTH_TOKEN_TTL"}, Category: "Authentication:",
			Usage: "lifetime of issued bearer tokens"},
		&cli.StringSliceFlag{Name: "url-token", EnvVars: []string{"SGLOAD_URL_TOKENS"}, Category: "Authentication:",
			Usage: "secret URL token for /webhook/sendgrid/{token}, repeatable or comma-separated (sgload token new)"},
		&cli.BoolFlag{Name: "insecure-no-auth", EnvVars: []string{"SGLOAD_INSECURE_NO_AUTH"}, Category: "Authentication:",
			Usage: "accept unauthenticated POSTs (local testing only)"},
		&cli.GenericFlag{Name: "max-body-bytes", Value: sizeFlag(8 << 20), EnvVars: []string{"SGLOAD_MAX_BODY_BYTES"}, Category: "Limits:",
			Usage: "refuse larger bodies with 413 (SendGrid batches are up to ~768KB)"},
		&cli.IntFlag{Name: "max-in-flight", Value: 512, EnvVars: []string{"SGLOAD_MAX_IN_FLIGHT"}, Category: "Limits:",
			Usage: "answer 503 beyond this many authenticated webhook requests at once"},
		&cli.GenericFlag{Name: "max-body-memory", Value: sizeFlag(128 << 20), EnvVars: []string{"SGLOAD_MAX_BODY_MEMORY"}, Category: "Limits:",
			Usage: "request bodies held in memory by all requests together; 503 beyond"},
		&cli.GenericFlag{Name: "max-unauthenticated-bytes", Value: sizeFlag(1 << 30), EnvVars: []string{"SGLOAD_MAX_UNAUTHENTICATED_BYTES"}, Category: "Limits:",
			Usage: "bytes held (memory or disk) for senders not yet authenticated, e.g. bodies awaiting their signature check; 503 beyond"},
		&cli.GenericFlag{Name: "spill-bytes", Value: sizeFlag(1 << 20), EnvVars: []string{"SGLOAD_SPILL_BYTES"}, Category: "Limits:",
			Usage: "a body larger than this awaits its signature check on disk (SPOOL/state/incoming), not in memory"},
		&cli.GenericFlag{Name: "min-body-rate", Value: sizeFlag(16 << 10), EnvVars: []string{"SGLOAD_MIN_BODY_RATE"}, Category: "Limits:",
			Usage: "bytes a second a body must keep arriving at after the first 10s (408 otherwise); 0 for no minimum"},
		&cli.DurationFlag{Name: "body-timeout", Value: 2 * time.Minute, EnvVars: []string{"SGLOAD_BODY_TIMEOUT"}, Category: "Limits:",
			Usage: "a request body must have arrived whole within this (408 otherwise)"},
		&cli.StringSliceFlag{Name: "allow-cidr", EnvVars: []string{"SGLOAD_ALLOW_CIDRS"}, Category: "Limits:",
			Usage: "answer 403 to webhook and token requests from outside these networks (repeatable or comma-separated; e.g. SendGrid's published ranges)"},
		&cli.GenericFlag{Name: "min-free-bytes", Value: sizeFlag(1 << 30), EnvVars: []string{"SGLOAD_MIN_FREE_BYTES"}, Category: "Limits:",
			Usage: "answer 503 while the spool's disk has less free space; 0 for no floor"},
		&cli.GenericFlag{Name: "segment-bytes", Value: sizeFlag(64 << 20), EnvVars: []string{"SGLOAD_SEGMENT_BYTES"}, Category: "Spool:",
			Usage: "seal the open segment at this size"},
		&cli.DurationFlag{Name: "segment-age", Value: time.Minute, EnvVars: []string{"SGLOAD_SEGMENT_AGE"}, Category: "Spool:",
			Usage: "seal the open segment at this age"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"SGLOAD_TLS_CERT"}, Category: "TLS:",
			Usage: "serve HTTPS with this certificate (PEM); SendGrid needs TLS 1.2+"},
		&cli.StringFlag{Name: "tls-key", EnvVars: []string{"SGLOAD_TLS_KEY"}, Category: "TLS:",
			Usage: "private key (PEM) for --tls-cert"},
		&cli.StringSliceFlag{Name: "tee", EnvVars: []string{"SGLOAD_TEE_URLS"},
			Usage: "also deliver every accepted POST, byte for byte with its signature headers, to this URL (repeatable)"},
		&cli.StringFlag{Name: "debug-addr", EnvVars: []string{"SGLOAD_DEBUG_ADDR"},
			Usage: "serve Go's pprof profiles on this address, e.g. 127.0.0.1:6060 (off when empty)"},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, EnvVars: []string{"SGLOAD_SHUTDOWN_TIMEOUT"},
			Usage: "on SIGTERM, wait this long for in-flight requests"},
	}
}

// runServer runs serve until a signal; jobs, when given, run beside it
// (sgload run's periodic flush).
//
// Its status page (GET /status) reports on the spool, and on st.Bucket's
// flush commits when run gives one.
func runServer(c *cli.Context, log *slog.Logger, reg *prometheus.Registry, st status.Options, jobs ...func(context.Context)) error {
	if err := checkAddr(c.String("addr")); err != nil {
		return err
	}
	cfg, err := webhookConfig(c, log)
	if err != nil {
		return err
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	st.Spool = spool.Dir{Root: c.String("spool")}
	page, rec := statusPage(st, status.CounterTotal(reg, "sgload_webhook_events_total"))
	jobs = append(jobs, rec.Run)
	srv, err := webhook.Open(webhook.ServerOptions{
		Spool: c.String("spool"),
		SpoolOptions: spool.Options{
			Node:         c.String("node"),
			SegmentBytes: sizeValue(c, "segment-bytes"),
			SegmentAge:   c.Duration("segment-age"),
			MinFreeBytes: freeFloor(c),
		},
		Handler: cfg, Addr: c.String("addr"), TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"),
		Tees: c.StringSlice("tee"), DebugAddr: c.String("debug-addr"), ShutdownTimeout: c.Duration("shutdown-timeout"),
		Registry: reg, Jobs: jobs, Logger: log,
		Routes: map[string]http.Handler{"GET /status": page},
	})
	if busy(err) {
		return err // exit 4, as for every lock
	}
	if err != nil {
		return failure(err, "check --spool (a writable local folder), --addr (a free address) and --tee (http(s) URLs)")
	}
	select {
	case err := <-srv.Err():
		_ = srv.Close()
		return failure(fmt.Errorf("serve: %w", err), "")
	case <-c.Context.Done():
	}
	if err := srv.Close(); err != nil {
		return failure(err, "")
	}
	return nil
}

// checkAddr refuses a listen address without a port separator, such as
// "17084", which the network library reports as a missing port.
func checkAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		hint := "use host:port, e.g. :8080 (every interface) or 127.0.0.1:8080"
		if _, perr := strconv.Atoi(addr); perr == nil {
			hint = fmt.Sprintf("a port alone needs a colon: --addr :%s (every interface) or --addr 127.0.0.1:%s", addr, addr)
		}
		return usageError(fmt.Errorf("--addr %q: %w", addr, err), hint)
	}
	return nil
}

// freeFloor is --min-free-bytes for the spool: 0 means no floor (the
// spool's own zero value means its default, 1 GiB).
func freeFloor(c *cli.Context) int64 {
	if n := sizeValue(c, "min-free-bytes"); n > 0 {
		return n
	}
	return -1
}

func webhookConfig(c *cli.Context, log *slog.Logger) (webhook.Config, error) {
	cfg := webhook.Config{
		InsecureNoAuth:          c.Bool("insecure-no-auth"),
		MaxBodyBytes:            sizeValue(c, "max-body-bytes"),
		MaxInFlight:             c.Int("max-in-flight"),
		MaxBodyMemory:           sizeValue(c, "max-body-memory"),
		MaxUnauthenticatedBytes: sizeValue(c, "max-unauthenticated-bytes"),
		SpillBytes:              sizeValue(c, "spill-bytes"),
		MinBodyRate:             sizeValue(c, "min-body-rate"),
		BodyTimeout:             c.Duration("body-timeout"),
		Logger:                  log,
	}
	if cfg.MinBodyRate == 0 {
		cfg.MinBodyRate = -1 // no minimum (the handler's zero value is its default)
	}
	nets, err := webhook.ParseNetworks(c.StringSlice("allow-cidr"))
	if err != nil {
		return cfg, usageError(fmt.Errorf("--allow-cidr: %w", err), "give networks as CIDRs, e.g. --allow-cidr 192.0.2.0/24,2001:db8::/32")
	}
	cfg.AllowNetworks = nets
	if sizeValue(c, "min-free-bytes") == 0 {
		log.Warn("--min-free-bytes is 0: no free-space floor; serve answers 200 until a write fails on a full disk")
	}
	if keys := c.StringSlice("signing-key"); len(keys) > 0 {
		sig, err := webhook.NewSignature(keys)
		if err != nil {
			return cfg, usageError(err, "paste the Verification Key from SendGrid's Mail Settings > Event Webhook > Signed Event Webhook")
		}
		sig.MaxAge = c.Duration("signature-max-age")
		cfg.Signature = sig
	}
	if id, secret := c.String("oauth-client-id"), c.String("oauth-client-secret"); id != "" || secret != "" {
		o, err := webhook.NewOAuth(id, secret, c.Duration("oauth-token-ttl"))
		if err != nil {
			return cfg, usageError(err, "set both SGLOAD_OAUTH_CLIENT_ID and SGLOAD_OAUTH_CLIENT_SECRET (16+ characters)")
		}
		cfg.OAuth = o
	}
	if toks := c.StringSlice("url-token"); len(toks) > 0 {
		t, err := webhook.NewURLTokens(toks)
		if err != nil {
			return cfg, usageError(err, "make one with: sgload token new")
		}
		cfg.URLTokens = t
	}
	if cfg.Signature == nil && cfg.OAuth == nil && cfg.URLTokens == nil {
		if !cfg.InsecureNoAuth {
			return cfg, usageError(webhook.ErrNoAuth,
				"for SendGrid, set --signing-key; for a local try-out, pass --insecure-no-auth")
		}
		log.Warn("INSECURE: --insecure-no-auth is set; anyone who can reach this address can write events to the spool. Do not expose it.")
		fmt.Fprintln(c.App.ErrWriter, "WARNING: sgload serve is running WITHOUT AUTHENTICATION (--insecure-no-auth). Local testing only.")
	}
	return cfg, nil
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/rewrite"
	"github.com/sgload/sgload/spool"
)

func forgetCommand() *cli.Command {
	return &cli.Command{
		Name:  "forget",
		Usage: "erase a person's data: every row and event holding their email address, from the bucket and the spool",
		Description: "Rewrites every bucket file holding one of the addresses (in any column: email, _raw,\n" +
			"custom args, URLs; in any case) without those rows, deleting the old files at once, and\n" +
			"scrubs the spool: segments waiting for flush, committed ones kept in done/, sync snapshots,\n" +
			"quarantine. The spool part needs the spool to itself: stop serve (and run, forward, sync)\n" +
			"first; SendGrid retries what it could not deliver meanwhile. An audit record that names no\n" +
			"address (a salted hash and counts) is kept in the bucket and the spool. Events for the\n" +
			"address that arrive later are kept: forgetting is not a suppression list.\n" +
			"Run it on every node's spool. Exit codes: 0 done, 1 failed (rerun), 2 bad flags,\n" +
			"4 a process holds the spool (stop it first).",
		OnUsageError: onUsageError,
		Flags: append(append([]cli.Flag{spoolFlag(),
			&cli.StringSliceFlag{Name: "email", EnvVars: []string{"SGLOAD_FORGET_EMAILS"},
				Usage: "an email address to erase (repeatable, or comma-separated)"},
			&cli.StringFlag{Name: "from-file", EnvVars: []string{"SGLOAD_FORGET_FILE"},
				Usage: "a file of addresses to erase, one per line"},
			&cli.BoolFlag{Name: "no-spool", EnvVars: []string{"SGLOAD_NO_SPOOL"}, Usage: "erase from the bucket only"},
			&cli.BoolFlag{Name: "no-bucket", EnvVars: []string{"SGLOAD_NO_BUCKET"}, Usage: "erase from the spool only"},
			jsonFlag("summary"), progressFlag(), memoryLimitFlag(),
		}, bucketFlags()...), compactFlags()...),
		Action: runForget,
	}
}

func forgetAddresses(c *cli.Context) ([]string, error) {
	addrs := c.StringSlice("email")
	if p := c.String("from-file"); p != "" {
		f, err := os.Open(p)
		if err != nil {
			return nil, usageError(fmt.Errorf("--from-file: %w", err), "")
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				addrs = append(addrs, l)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, usageError(fmt.Errorf("--from-file %s: %w", p, err), "")
		}
	}
	return addrs, nil
}

func runForget(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	log = log.With("component", "forget")
	setMemoryLimit(c)
	addrs, err := forgetAddresses(c)
	if err != nil {
		return err
	}
	m, err := rewrite.NewMatcher(addrs)
	if err != nil {
		return usageError(err, "give addresses with --email or --from-file")
	}
	if c.Bool("no-spool") && c.Bool("no-bucket") {
		return usageError(errors.New("--no-spool and --no-bucket leave nothing to do"), "")
	}
	audit := rewrite.NewAudit(addrs, time.Now(), version)
	if !c.Bool("no-spool") {
		d, err := openSpool(c)
		if err != nil {
			return err
		}
		scrubbed, err := spool.Forget(d.Root, m.Text)
		if err != nil {
			if errors.Is(err, spool.ErrBusy) {
				return &cliError{err: err, code: exitBusy,
					hint: "stop sgload serve (or run, forward, sync) on this spool first; SendGrid retries meanwhile"}
			}
			return failure(err, "")
		}
		audit.Spool = &scrubbed
		log.Info("spool scrubbed", "segments", scrubbed.Segments, "events", scrubbed.Events, "objects", scrubbed.Objects,
			"quarantine_files", scrubbed.QuarantineFiles)
	}
	if !c.Bool("no-bucket") {
		o, closeBucket, err := rewriteOptions(c)
		if err != nil {
			return err
		}
		defer closeBucket()
		o.Logger, o.MinAge = log, 0
		if _, err := rewrite.Forget(c.Context, o, m, audit); err != nil {
			return failure(err, "rerun sgload forget: it picks up where it stopped")
		}
	}
	if !c.Bool("no-spool") {
		d := spool.Dir{Root: c.String("spool")}
		if err := durable.MkdirAll(d.Audits(), 0o755); err != nil {
			return failure(err, "")
		}
		if err := durable.WriteFile(filepath.Join(d.Audits(), audit.ID+".json"), audit.JSON(), 0o644); err != nil {
			return failure(err, "")
		}
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, audit)
	}
	line := fmt.Sprintf("forgot %d addresses (audit %s)", len(audit.Hashes), audit.ID)
	if b := audit.Bucket; b != nil {
		line += fmt.Sprintf("; bucket: %s rows removed from %d files", count(b.RowsRemoved), b.FilesRewritten+b.FilesDeleted)
	}
	if s := audit.Spool; s != nil {
		line += fmt.Sprintf("; spool: %s events and %s objects from %d segments, %d quarantined files",
			count(s.Events), count(s.Objects), s.Segments, s.QuarantineFiles)
	}
	fmt.Fprintln(c.App.Writer, line)
	return nil
}

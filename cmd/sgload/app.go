package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/sgload/sgload/spool"
)

// Exit codes, documented in README.md ("Exit codes").
const (
	exitOK       = 0
	exitFailure  = 1 // the job failed; a retry may succeed
	exitUsage    = 2 // bad flags or configuration; a retry will not help
	exitPartial  = 3 // some of the work failed (named in the output), the rest is done
	exitBusy     = 4 // another process holds the lock; nothing was done
	exitMismatch = 5 // verify found mismatches
)

var version = "dev"

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "sgload",
		Usage:   "land SendGrid events and objects in object storage as Parquet",
		Version: version,
		Description: "sgload serve receives SendGrid's Event Webhook into a local, fsynced spool;\n" +
			"sgload flush turns the spool into partitioned Parquet in S3, GCS, Azure Blob or a folder,\n" +
			"exactly once; sgload run does both in one process.\n" +
			"Every flag can also be set with the environment variable shown beside it.",
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"SGLOAD_LOG_LEVEL"},
				Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "auto", EnvVars: []string{"SGLOAD_LOG_FORMAT"},
				Usage: "text, json, or auto (text on a terminal, json otherwise)"},
			&cli.StringFlag{Name: "cpu-profile", EnvVars: []string{"SGLOAD_CPU_PROFILE"},
				Usage: "write a Go CPU profile of the whole command to this file (go tool pprof reads it)"},
		},
		Before: startCPUProfile,
		After:  stopCPUProfile,
		Commands: []*cli.Command{
			runCommand(),
			serveCommand(),
			flushCommand(),
			replayCommand(),
			rebuildCommand(),
			compactCommand(),
			forgetCommand(),
			syncCommand(),
			backfillCommand(),
			forwardCommand(),
			verifyCommand(),
			viewsCommand(),
			tokenCommand(),
		},
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {}, // main maps errors to exit codes
	}
}

// startCPUProfile profiles the command when --cpu-profile is set: the way
// to see where a slow flush spends its time (serve has --debug-addr).
func startCPUProfile(c *cli.Context) error {
	path := c.String("cpu-profile")
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return usageError(fmt.Errorf("--cpu-profile: %w", err), "")
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return failure(fmt.Errorf("--cpu-profile %s: %w", path, err), "")
	}
	c.App.Metadata = map[string]any{"cpu-profile": f}
	return nil
}

func stopCPUProfile(c *cli.Context) error {
	f, ok := c.App.Metadata["cpu-profile"].(*os.File)
	if !ok {
		return nil
	}
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return failure(fmt.Errorf("--cpu-profile %s: %w", f.Name(), err), "")
	}
	return nil
}

// newLogger builds the slog logger from the global flags. Logs go to stderr.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageError(fmt.Errorf("--log-level %q: %w", c.String("log-level"), err), "use debug, info, warn or error")
	}
	w := c.App.ErrWriter
	format := c.String("log-format")
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError(fmt.Errorf("--log-format %q", format), "use text, json or auto")
}

// cliError carries an exit code and a hint for the operator.
type cliError struct {
	err  error
	hint string
	code int
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func usageError(err error, hint string) error {
	return &cliError{err: err, hint: hint, code: exitUsage}
}
func failure(err error, hint string) error { return &cliError{err: err, hint: hint, code: exitFailure} }

// exitCode prints err as one "error:" line and at most one "hint:" line, and
// returns the process exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	code, hint := exitFailure, ""
	var ce *cliError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ce):
		code, hint = ce.code, ce.hint
	case errors.Is(err, spool.ErrBusy):
		code, hint = exitBusy, "another sgload process of the same kind is working on this spool; nothing was done, try again when it ends"
	case errors.Is(err, spool.ErrNoSpool):
		code, hint = exitUsage, "check --spool (SGLOAD_SPOOL): the folder sgload serve writes to (serve creates it)"
	case errors.As(err, &ec):
		code = ec.ExitCode()
	}
	fmt.Fprintf(stderr, "error: %v\n", err)
	if hint != "" {
		fmt.Fprintf(stderr, "hint: %s\n", hint)
	}
	return code
}

// onUsageError marks flag parsing errors as usage errors (exit 2).
func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageError(err, "see "+c.App.Name+" "+strings.TrimSpace(c.Command.FullName())+" --help")
}

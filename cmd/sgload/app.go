package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/urfave/cli/v2"

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

func newApp(stdout, stderr io.Writer) *cli.App {
	cli.VersionPrinter = printVersion
	return &cli.App{
		Name:    "sgload",
		Usage:   "land SendGrid events and objects in object storage as Parquet",
		Version: versionLine(),
		Description: "sgload serve receives SendGrid's Event Webhook into a local, fsynced spool;\n" +
			"sgload flush turns the spool into partitioned Parquet in S3, GCS, Azure Blob or a folder,\n" +
			"exactly once; sgload run does both in one process.\n" +
			"Every flag can also be set with the environment variable shown beside it.",
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Metadata:             map[string]any{"stderr": &stderrLine{w: stderr}},
		Flags: append(logFlags(""),
			&cli.StringFlag{Name: "cpu-profile", EnvVars: []string{"SGLOAD_CPU_PROFILE"},
				Usage: "write a Go CPU profile of the whole command to this file (go tool pprof reads it)"},
		),
		Before: startCPUProfile,
		After:  stopCPUProfile,
		Action: unknownCommand,
		Commands: withLogFlags(guarded([]*cli.Command{
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
			statusCommand(),
		})),
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
	c.App.Metadata["cpu-profile"] = f
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
	var je *jsonError
	if errors.As(err, &je) {
		writeJSONError(je.w, je.err, hint, code)
	}
	return code
}

// unknownCommand is the app's own action: reached with no command (it
// shows the help) or with one sgload does not have (a usage error, with
// the nearest name when there is one).
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowAppHelp(c)
	}
	name := c.Args().First()
	hint := "see sgload --help for the commands"
	if near := nearestCommand(c.App, name); near != "" {
		hint = fmt.Sprintf("did you mean sgload %s?", near)
	}
	return usageError(fmt.Errorf("unknown command %q", name), hint)
}

// nearestCommand is the command name within two edits of name, if any.
func nearestCommand(app *cli.App, name string) string {
	best, bestD := "", 3
	for _, cmd := range app.Commands {
		for _, n := range cmd.Names() {
			if d := editDistance(name, n); d < bestD {
				best, bestD = n, d
			}
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (adjacent swaps count
// one: flsuh → flush).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// onUsageError marks flag parsing errors as usage errors (exit 2).
func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageError(err, "see "+c.App.Name+" "+strings.TrimSpace(c.Command.FullName())+" --help")
}

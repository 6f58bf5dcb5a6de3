package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/sgload/sgload/spool"
)

// printJSON writes v as one line: Airflow's BashOperator pushes the last
// line of stdout to XCom, so a summary must never span lines.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// jsonError marks the error of a --json command that printed nothing:
// exitCode then also prints {"error":…,"hint":…,"exit_code":…} as one line
// on stdout, so a script that reads stdout sees the failure too.
type jsonError struct {
	err error
	w   io.Writer
}

func (e *jsonError) Error() string { return e.err.Error() }
func (e *jsonError) Unwrap() error { return e.err }

// countingWriter notes whether a command wrote to stdout.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

// guarded wraps every command's action with what all commands share: extra
// positional arguments are refused (urfave/cli stops reading flags at the
// first one, so `flush ./spool --bucket X` would silently drop --bucket),
// and a --json command that fails before printing its summary prints the
// error as one JSON line.
func guarded(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		if len(cmd.Subcommands) > 0 {
			guarded(cmd.Subcommands)
		}
		act := cmd.Action
		if act == nil {
			continue
		}
		name := cmd.Name
		takesArgs := cmd.ArgsUsage != ""
		cmd.Action = func(c *cli.Context) error {
			if c.NArg() > 0 && !takesArgs {
				return extraArgs(c, name)
			}
			if !c.Bool("json") {
				return act(c)
			}
			cw := &countingWriter{w: c.App.Writer}
			c.App.Writer = cw
			err := act(c)
			c.App.Writer = cw.w
			if err != nil && cw.n == 0 {
				return &jsonError{err: err, w: cw.w}
			}
			return err
		}
	}
	return cmds
}

// extraArgs explains a positional argument: every input is a flag, and
// flags after the argument were not read.
func extraArgs(c *cli.Context, cmd string) error {
	arg := c.Args().First()
	hint := "every input is a flag (see sgload " + cmd + " --help)"
	if hasFlag(c.Command, "spool") && !strings.HasPrefix(arg, "-") {
		hint = fmt.Sprintf("did you mean --spool %s? Flags after it were not read", arg)
	}
	return usageError(fmt.Errorf("sgload %s takes no arguments, got %q", cmd, strings.Join(c.Args().Slice(), " ")), hint)
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// writeJSONError prints a failed --json command's error line.
func writeJSONError(w io.Writer, err error, hint string, code int) {
	_ = printJSON(w, struct {
		Error    string `json:"error"`
		Hint     string `json:"hint,omitempty"`
		ExitCode int    `json:"exit_code"`
	}{err.Error(), hint, code})
}

// stderrLine is stderr shared by the logger and a progress line: a log
// line first ends the progress line, which the next update draws again
// below it, so the two never share a line.
type stderrLine struct {
	mu   sync.Mutex
	w    io.Writer
	wide int // width of the progress line on screen; 0 when none
}

func (s *stderrLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked()
	return s.w.Write(p)
}

// show draws line in place of the previous progress line.
func (s *stderrLine) show(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pad := max(0, s.wide-len(line))
	s.wide = max(len(line), 1)
	fmt.Fprintf(s.w, "\r%s%*s", line, pad, "")
}

// clear removes the progress line.
func (s *stderrLine) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked()
}

func (s *stderrLine) clearLocked() {
	if s.wide > 0 {
		fmt.Fprintf(s.w, "\r%*s\r", s.wide, "")
		s.wide = 0
	}
}

func (s *stderrLine) isTerminal() bool {
	f, ok := s.w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// stderrOf is the App's shared stderr.
func stderrOf(c *cli.Context) *stderrLine {
	if s, ok := c.App.Metadata["stderr"].(*stderrLine); ok {
		return s
	}
	return &stderrLine{w: c.App.ErrWriter}
}

// logFlags are --log-level and --log-format, accepted before the command
// (global) and after it (on each command), as the README documents them.
func logFlags(category string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"SGLOAD_LOG_LEVEL"}, Category: category,
			Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "auto", EnvVars: []string{"SGLOAD_LOG_FORMAT"}, Category: category,
			Usage: "text, json, or auto (text on a terminal, json otherwise)"},
	}
}

// withLogFlags adds the logging flags to every command that lacks them.
func withLogFlags(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		withLogFlags(cmd.Subcommands)
		if cmd.Action != nil && !hasFlag(cmd, "log-level") {
			cmd.Flags = append(cmd.Flags, logFlags("Logging:")...)
		}
	}
	return cmds
}

// lineageString is the value of a flag given on the command line of the
// command or of any command above it (the nearest wins), else its
// environment variable, else its default. urfave/cli counts a value from
// the environment as set, so a value equal to the environment's is passed
// over here: the command line of another level may still say otherwise.
func lineageString(c *cli.Context, name, env string) string {
	envValue := os.Getenv(env)
	for _, ctx := range c.Lineage() {
		if !setHere(ctx, name) {
			continue
		}
		if v := ctx.String(name); envValue == "" || v != envValue {
			return v
		}
	}
	return c.String(name)
}

// setHere reports whether name was set on ctx's level.
func setHere(ctx *cli.Context, name string) bool {
	for _, n := range ctx.LocalFlagNames() {
		if n == name {
			return true
		}
	}
	return false
}

// newLogger builds the slog logger from the logging flags. Logs go to
// stderr, through the progress line's writer.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	lv := lineageString(c, "log-level", "SGLOAD_LOG_LEVEL")
	if err := level.UnmarshalText([]byte(lv)); err != nil {
		return nil, usageError(fmt.Errorf("--log-level %q: %w", lv, err), "use debug, info, warn or error")
	}
	w := stderrOf(c)
	format := lineageString(c, "log-format", "SGLOAD_LOG_FORMAT")
	if format == "auto" {
		format = "json"
		if w.isTerminal() {
			format = "text"
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(componentHandler{Handler: slog.NewTextHandler(w, opts)}), nil
	case "json":
		return slog.New(componentHandler{Handler: slog.NewJSONHandler(w, opts)}), nil
	}
	return nil, usageError(fmt.Errorf("--log-format %q", format), "use text, json or auto")
}

// componentHandler keeps one "component" attribute per line: a package
// given a logger already marked with its caller's component marks it with
// its own (serve → spool), and the innermost replaces the outer one instead
// of repeating the key, which JSON readers reject or silently collapse.
type componentHandler struct {
	slog.Handler
	component slog.Value
	has       bool
}

const componentKey = "component"

func (h componentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	rest := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a.Key == componentKey {
			h.component, h.has = a.Value, true
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) > 0 {
		h.Handler = h.Handler.WithAttrs(rest)
	}
	return h
}

// WithGroup fixes the component outside the group: attributes after it
// belong to the group.
func (h componentHandler) WithGroup(name string) slog.Handler {
	inner := h.Handler
	if h.has {
		inner = inner.WithAttrs([]slog.Attr{{Key: componentKey, Value: h.component}})
	}
	return componentHandler{Handler: inner.WithGroup(name)}
}

func (h componentHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.has {
		// Records from log.Info("…", "component", x) keep theirs.
		dup := false
		r.Attrs(func(a slog.Attr) bool { dup = a.Key == componentKey; return !dup })
		if !dup {
			r = r.Clone()
			r.AddAttrs(slog.Attr{Key: componentKey, Value: h.component})
		}
	}
	return h.Handler.Handle(ctx, r)
}

// busy is a run that did nothing because another holds the lock.
func busy(err error) bool { return errors.Is(err, spool.ErrBusy) }

package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"
)

// byteSize is a flag value such as 64MiB, 1GiB, 768KB or 1048576.
type byteSize int64

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseByteSize reads a size the way humanize does: IEC (KiB, MiB, GiB) and
// SI (KB, MB, GB) units, case-insensitive, with or without a space.
func parseByteSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("size %q: use a number with an optional unit (KiB, MiB, GiB, KB, MB, GB)", s)
	}
	return int64(n), nil
}

// sizeValue reads a flag made with sizeFlag.
func sizeValue(c *cli.Context, name string) int64 {
	return int64(*c.Generic(name).(*byteSize))
}

func sizeFlag(n int64) *byteSize {
	b := byteSize(n)
	return &b
}

// jsonFlag is --json: the command's summary as JSON on stdout, for Airflow.
func jsonFlag(what string) cli.Flag {
	return &cli.BoolFlag{Name: "json", EnvVars: []string{"SGLOAD_JSON"}, Usage: "print the " + what + " as JSON on stdout (for Airflow)"}
}

// progressFlag is --progress, read by showProgress.
func progressFlag() cli.Flag {
	return &cli.StringFlag{Name: "progress", Value: "auto", EnvVars: []string{"SGLOAD_PROGRESS"},
		Usage: "progress line on stderr: auto (on a terminal), always or never"}
}

// nodeFlag is --node for the commands that read the spool's node id.
func nodeFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "node", EnvVars: []string{"SGLOAD_NODE"}, Usage: usage}
}

package main

import (
	"errors"
	"fmt"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/sgload/sgload/loader"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "reconcile the spool's committed segments, the manifests and the bucket",
		Description: "Checks every object a manifest lists (present, size, MD5, Parquet row count), that no\n" +
			"Parquet object is outside a manifest, that event counts add up, and that every segment\n" +
			"in SPOOL/done is committed. Exit codes: 0 all reconcile, 5 mismatches found (listed),\n" +
			"1 verify itself failed, 2 bad flags.",
		OnUsageError: onUsageError,
		Flags: append(append([]cli.Flag{spoolFlag()}, bucketFlags()...),
			nodeFlag("node id (default: the spool's)"),
			&cli.BoolFlag{Name: "no-spool", EnvVars: []string{"SGLOAD_NO_SPOOL"}, Usage: "check the bucket only"},
			jsonFlag("report"),
		),
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	o := loader.VerifyOptions{Prefix: prefix(c), Node: c.String("node")}
	if !c.Bool("no-spool") {
		d, err := openSpool(c)
		if err != nil {
			return usageError(err, "check --spool, or pass --no-spool to check the bucket alone")
		}
		o.Spool = d
	}
	b, err := openExistingBucket(c.Context, c)
	if err != nil {
		return err
	}
	defer b.Close()
	o.Bucket = b
	rep, err := loader.Verify(c.Context, o)
	if err != nil {
		return failure(fmt.Errorf("verify: %w", err), "")
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, rep); err != nil {
			return err
		}
	} else {
		w := c.App.Writer
		tables := make([]string, 0, len(rep.Tables))
		for t := range rep.Tables {
			tables = append(tables, t)
		}
		sort.Strings(tables)
		for _, t := range tables {
			var rows int64
			for _, n := range rep.Tables[t] {
				rows += n
			}
			fmt.Fprintf(w, "%-22s %12s rows in %d partitions\n", t, count(rows), len(rep.Tables[t]))
		}
		for _, p := range rep.Problems {
			fmt.Fprintln(w, "MISMATCH:", p)
		}
		fmt.Fprintf(w, "%d manifests, %d files, %s rows, %s; %d committed segments checked; %d problems\n",
			rep.Manifests, rep.Files, count(rep.Rows), size(rep.Bytes), rep.Segments, len(rep.Problems))
	}
	if len(rep.Problems) > 0 {
		return &cliError{err: errors.New("verify found mismatches"), code: exitMismatch,
			hint: "an unfinished plan is finished by the next sgload flush; anything else needs a look"}
	}
	return nil
}

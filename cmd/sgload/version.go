package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set by release builds (-ldflags "-X main.version=v1.2.3");
// otherwise it comes from the module version in the build info (go install
// github.com/sgload/sgload/cmd/sgload@v1.2.3), or is "dev".
var version = "dev"

// commit is set by release builds (-X main.commit=…) where the build info
// has no VCS stamp (a build from an archive, or with -buildvcs=false).
var commit = ""

// buildVersion is what sgload --version prints and manifests record.
type buildVersion struct {
	Version  string // v1.2.3, or dev
	Commit   string // the VCS revision, "" when unknown
	Time     string // the commit's time
	Modified bool   // built from a work tree with changes
	Go       string
}

func readBuildVersion() buildVersion {
	v := buildVersion{Version: version, Commit: commit, Go: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// versionLine is one line: "v1.2.3 (commit 0123abcd4567, 2026-11-30T10:00:00Z, go1.26.8)".
func versionLine() string {
	v := readBuildVersion()
	commit := v.Commit
	if commit == "" {
		commit = "unknown"
	} else if len(commit) > 12 {
		commit = commit[:12]
	}
	if v.Modified {
		commit += "+changes"
	}
	extra := ""
	if v.Time != "" {
		extra = ", " + v.Time
	}
	return fmt.Sprintf("%s (commit %s%s, %s)", v.Version, commit, extra, v.Go)
}

func printVersion(c *cli.Context) {
	fmt.Fprintf(c.App.Writer, "sgload %s\n", c.App.Version)
}

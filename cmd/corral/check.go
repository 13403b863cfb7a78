package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/corralhq/corral/isolate"
)

// checkReport is what `corral check --json` prints.
type checkReport struct {
	// OK is true when every required feature is present.
	OK bool `json:"ok"`
	// Features lists every feature checked, required and informational.
	Features []isolate.Feature `json:"features"`
}

func cmdCheck(ctx context.Context, args []string) error {
	fs := newFlagSet("check", "corral check [--json]",
		`Reports, one line each, the kernel and host features corral's sandboxes
are made of: root, user/pid/mount/uts/ipc/net/cgroup namespaces (probed by
cloning into them), cgroup version and controllers (probed, as root, by creating
and removing a cgroup under corral/), overlay, squashfs and tmpfs, loop devices,
Landlock, seccomp, mksquashfs, and a static busybox for the test image.

Each line is "ok" or "missing", the feature, what was found and, when missing,
how to get it. Exits 1 when a required feature is missing; informational ones
(marked "optional") do not count.`)
	asJSON := fs.Bool("json", false, `print {"ok": ..., "features": [...]} as JSON instead of lines`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{2} // the flag package printed the error and usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "corral check: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitError{2}
	}
	features := isolate.Check()
	rep := checkReport{OK: len(isolate.Missing(features)) == 0, Features: features}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printCheck(os.Stdout, features)
	}
	if !rep.OK {
		return exitError{1}
	}
	return nil
}

// printCheck writes one aligned line per feature and a summary line.
func printCheck(w io.Writer, features []isolate.Feature) {
	width := 0
	for _, f := range features {
		width = max(width, len(f.Name))
	}
	for _, f := range features {
		status := "ok"
		if !f.OK {
			status = "missing"
		}
		detail := f.Detail
		if !f.Required && !f.OK {
			detail += " (optional)"
		}
		line := fmt.Sprintf("%-8s %-*s  %s", status, width, f.Name, detail)
		if !f.OK && f.Fix != "" {
			line += " — fix: " + f.Fix
		}
		fmt.Fprintln(w, line)
	}
	missing := isolate.Missing(features)
	if len(missing) == 0 {
		fmt.Fprintln(w, "\nall required features are present")
		return
	}
	names := make([]string, len(missing))
	for i, f := range missing {
		names[i] = f.Name
	}
	fmt.Fprintf(w, "\n%d required feature(s) missing: %s\n", len(missing), strings.Join(names, ", "))
}

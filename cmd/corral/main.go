// Command corral runs untrusted jobs in kernel sandboxes, pulled from NATS
// JetStream. The same binary is re-executed as each sandbox's init.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/corralhq/corral/isolate"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// command is one subcommand of the CLI.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{
	"exec":    {"run one command in a fresh sandbox and print its result", cmdExec},
	"run":     {"submit one command as a job to the workers and print its result", cmdRun},
	"submit":  {"submit the jobs of a JSON Lines file and print their results in order", cmdSubmit},
	"up":      {"run an embedded NATS server with JetStream and a worker, in the foreground", cmdUp},
	"worker":  {"pull jobs from NATS JetStream and run them in warm sandboxes", cmdWorker},
	"image":   {"build, list, inspect and remove rootfs images", cmdImage},
	"check":   {"report the kernel features corral needs", cmdCheck},
	"bench":   {"measure jobs/s, latency, CPU and memory per job end to end", cmdBench},
	"dead":    {"list the jobs that could not be run, and replay them", cmdDead},
	"version": {"print the version", cmdVersion},
}

// exitError carries a process exit code out of a subcommand without printing
// anything more (the subcommand already reported what happened).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// The sandbox init: when re-executed as the init, the binary never
	// returns to the CLI below.
	if isolate.IsInit() {
		isolate.RunInit()
		return
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "corral: unknown command %q\n\n", args[0])
		usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, args[1:])
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(os.Stderr, "corral %s: %v\n", args[0], err)
		return 1
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "corral runs untrusted jobs in kernel sandboxes (namespaces, cgroups,\nseccomp, Landlock) from a squashfs image under a tmpfs overlay.\n\nUsage: corral COMMAND [FLAGS] [ARGS]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'corral COMMAND --help' for the flags of a command.\n")
}

func cmdVersion(ctx context.Context, args []string) error {
	fmt.Println("corral", version)
	return nil
}

// newFlagSet returns a flag set whose --help prints the usage line, the
// description and the flags.
func newFlagSet(name, usageLine, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\n%s\n", usageLine, description)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseCommand parses fs's flags up to the command that follows them: the
// first argument that is not a flag, or everything after "--". The
// command's own arguments are never read as corral's flags (corral run
// python3 x.py --image foo passes --image to x.py).
func parseCommand(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// parseInterspersed parses flags that may appear before and after positional
// arguments (for example "image build NAME --from DIR"). Arguments after "--"
// are always positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stops at "--" (consumed) or at the first non-flag.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

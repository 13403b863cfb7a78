package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/isolate"
	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/rootfs"
)

const defaultDataDir = "/var/lib/corral"

func cmdExec(ctx context.Context, args []string) error {
	fs := newFlagSet("exec", "corral exec [FLAGS] -- CMD [ARGS...]",
		`Runs one command in a fresh sandbox made from an image and prints what it
printed, exiting with its exit code (128+N when killed by signal N; a limit
breach is also reported on stderr). With --json, prints the step result as the
protocol shapes it instead. Limits default to the protocol's defaults.
Flags go before the command: everything from the command on is its own.

Examples:
  corral exec -- sh -c 'echo hello from $(hostname)'
  corral exec --image busybox --wall 2s --memory 64M -- sh -c 'yes > /dev/null'
  corral exec --json --stdin in.txt -- python3 main.py`)
	var (
		data    = fs.String("data", defaultDataDir, "data directory holding the image store")
		image   = fs.String("image", "default", "image to run the command in")
		asJSON  = fs.Bool("json", false, "print the step result as JSON (PROTOCOL.md) instead of the output")
		cwd     = fs.String("cwd", "/work", "working directory inside the sandbox")
		stdin   = fs.String("stdin", "", "file to use as standard input (default: empty)")
		slot    = fs.Int("slot", 0, "sandbox slot: picks the host uid range (see docs/sandbox.md)")
		env     listFlag
		verbose = fs.Bool("v", false, "show the sandbox init's diagnostics on stderr")
		seccomp = fs.String("seccomp", "default", "system call profile: default (compilers, interpreters, shells) or strict (compute only); there is no off")
	)
	fs.Var(&env, "env", "set an environment variable KEY=VALUE (repeatable)")
	limitFlags := addLimitFlags(fs, "")
	argv, err := parseCommand(fs, args)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		fs.Usage()
		return errors.New("no command given (put it after --)")
	}
	lim := limitFlags.limits()
	if err := lim.Check(jobs.MaxLimits()); err != nil {
		return err
	}
	lim = lim.WithDefaults(jobs.DefaultLimits())
	environ, err := mergeEnv(isolate.DefaultEnv, env)
	if err != nil {
		return err
	}
	var in []byte
	if *stdin != "" {
		if in, err = os.ReadFile(*stdin); err != nil {
			return err
		}
	}
	profile, err := isolate.ParseSeccompProfile(*seccomp)
	if err != nil {
		return err
	}
	if *slot < 0 || *slot > 1<<14 {
		return fmt.Errorf("--slot %d out of range", *slot)
	}

	store, err := rootfs.OpenStore(*data)
	if err != nil {
		return err
	}
	img, err := store.Get(*image)
	if err != nil {
		if errors.Is(err, rootfs.ErrImageNotFound) {
			return fmt.Errorf("%w (build one with 'corral image build %s --from DIR', or 'corral image default')", err, *image)
		}
		return err
	}
	cleanStaleData(*data)
	runDir := filepath.Join(*data, "run", strconv.Itoa(os.Getpid()))
	mounter, err := rootfs.NewMounter(runDir)
	if err != nil {
		return err
	}
	defer mounter.Close()
	lower, release, err := mounter.Acquire(img)
	if err != nil {
		return err
	}
	defer release()
	if err := isolate.CleanStaleCgroups(""); err != nil {
		fmt.Fprintf(os.Stderr, "corral: cleaning up the cgroups of an earlier run: %v\n", err)
	}
	cfg := isolate.Config{
		CgroupParent: isolate.OwnerCgroupParent("", os.Getpid()),
		Lower:        lower,
		RunDir:       mounter.Dir(), // absolute, whatever --data was
		HostUID:      uint32(isolate.DefaultUIDBase + *slot*isolate.IDsPerSandbox),
		DiskBytes:    lim.DiskBytes,
	}
	if *verbose {
		cfg.Log = os.Stderr
	}
	sb, err := isolate.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer sb.Close()
	res, err := sb.Run(ctx, isolate.Process{
		Argv: argv, Env: environ, Cwd: *cwd, Stdin: in, Limits: lim, Seccomp: profile,
	})
	if err != nil {
		return err
	}
	res.Name = "step-1" // the protocol's name for an unnamed first step
	if *asJSON {
		return printJSON(res, res.Status == jobs.StatusOK)
	}
	code := printStep(res, true)
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// printJSON prints v as indented JSON on stdout; the command then exits 0
// when ok, else 1.
func printJSON(v any, ok bool) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	if !ok {
		return exitError{1}
	}
	return nil
}

// printStep writes a step's output (when output is set) and, when a limit
// or a signal ended it, a line naming that; it returns the exit code the
// CLI exits with: the step's, or 128+N for signal N.
func printStep(st *jobs.StepResult, output bool) int {
	if output {
		os.Stdout.Write(outputBytes(st.Stdout, st.StdoutB64))
		os.Stderr.Write(outputBytes(st.Stderr, st.StderrB64))
	}
	code := st.ExitCode
	switch st.Status {
	case jobs.StatusOK, jobs.StatusNonzeroExit:
	default:
		fmt.Fprintf(os.Stderr, "corral: %s", st.Status)
		if st.Signal != "" {
			fmt.Fprintf(os.Stderr, " (%s)", st.Signal)
		}
		fmt.Fprintf(os.Stderr, " after %.0f ms wall, %.0f ms cpu, peak memory %d bytes\n",
			st.Usage.WallTimeMs, st.Usage.CPUTimeMs, st.Usage.MemoryPeakBytes)
		if code <= 0 {
			code = 128 + signalNumber(st.Signal)
		}
	}
	return code
}

// mergeEnv lays KEY=VALUE settings over a base environment.
func mergeEnv(base []string, set []string) ([]string, error) {
	out := append([]string(nil), base...)
	for _, kv := range set {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		replaced := false
		for i, e := range out {
			if strings.HasPrefix(e, k+"=") {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out, nil
}

func outputBytes(text, b64 string) []byte {
	if b64 != "" {
		if b, err := base64.StdEncoding.DecodeString(b64); err == nil {
			return b
		}
	}
	return []byte(text)
}

// signalNumber maps "SIGKILL" to 9; 9 for anything unknown.
func signalNumber(name string) int {
	if s := unix.SignalNum(name); s != 0 {
		return int(s)
	}
	return int(unix.SIGKILL)
}

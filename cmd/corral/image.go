package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/corralhq/corral/rootfs"
)

// imageCommands are the subcommands of "corral image", in the order of its
// help.
var imageCommands = []struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string) error
}{
	{"build", "NAME --from DIR|FILE.tar", "build an image from a directory or a .tar/.tar.gz/.tgz", cmdImageBuild},
	{"default", "[NAME]", "build the default image: busybox and the host's python3", cmdImageDefault},
	{"busybox", "[NAME]", "build a tiny busybox-only image (tests, smoke checks)", cmdImageBusybox},
	{"ls", "", "list the images", cmdImageList},
	{"inspect", "NAME", "print an image's manifest as JSON", cmdImageInspect},
	{"rm", "NAME...", "remove images, and the layers no other image uses", cmdImageRemove},
}

func imageUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage: corral image COMMAND [FLAGS] [ARGS]

Builds, lists, inspects and removes the read-only squashfs images that
sandboxes run on. Images are kept in the data directory (--data, default
%s): manifests in images/, layers in layers/sha256/.

Commands:
`, rootfs.DefaultDataDir)
	for _, c := range imageCommands {
		fmt.Fprintf(w, "  %-36s %s\n", c.name+" "+c.args, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'corral image COMMAND --help' for the flags of a command.\n")
}

func cmdImage(ctx context.Context, args []string) error {
	if len(args) == 0 {
		imageUsage(os.Stderr)
		return exitError{2}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		imageUsage(os.Stdout)
		return flag.ErrHelp
	case "list":
		args[0] = "ls"
	case "remove":
		args[0] = "rm"
	}
	for _, c := range imageCommands {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	return fmt.Errorf("unknown command %q: want build, default, busybox, ls, inspect or rm (see 'corral image --help')", args[0])
}

// dataFlag adds the --data flag to fs.
func dataFlag(fs *flag.FlagSet) *string {
	return fs.String("data", rootfs.DefaultDataDir, "data directory holding the image store")
}

// oneName returns the single NAME argument, or def when there is none and
// def is not empty.
func oneName(fs *flag.FlagSet, pos []string, def string) (string, error) {
	switch {
	case len(pos) == 1:
		return pos[0], nil
	case len(pos) == 0 && def != "":
		return def, nil
	case len(pos) == 0:
		fs.Usage()
		return "", errors.New("no image name given")
	}
	return "", fmt.Errorf("one image name expected, got %d: %s", len(pos), strings.Join(pos, " "))
}

// progressWriter returns where build progress goes: stderr unless quiet.
func progressWriter(quiet bool) io.Writer {
	if quiet {
		return nil
	}
	return os.Stderr
}

func cmdImageBuild(ctx context.Context, args []string) error {
	fs := newFlagSet("image build", "corral image build NAME --from DIR|FILE.tar [--base IMAGE] [--compression zstd|lz4|gzip]",
		`Builds the image NAME from a directory, or from a .tar, .tar.gz or .tgz
archive, with mksquashfs (apt-get install squashfs-tools). An archive is
extracted as root with GNU tar, keeping owners, modes and device nodes: use
only archives you trust. With --base, the new layer goes on top of the
layers of that image (the base is recorded by digest: rebuilding it later
does not change this image). Building an existing NAME replaces it; the
layers nothing uses any more are deleted. Progress goes to stderr; the
image's digest is printed on stdout.

Names: 1 to 64 of a-z 0-9 . _ -, starting with a letter or digit.

Examples:
  corral image build judge --from ./rootfs
  corral image build app --from app.tar.gz --base default`)
	data := dataFlag(fs)
	from := fs.String("from", "", "directory or .tar/.tar.gz/.tgz archive to build from (required)")
	base := fs.String("base", "", "image whose layers go below the new one")
	comp := fs.String("compression", "zstd", "squashfs compression: zstd, lz4 (fastest to read) or gzip")
	quiet := fs.Bool("q", false, "print no progress")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	name, err := oneName(fs, pos, "")
	if err != nil {
		return err
	}
	if *from == "" {
		return errors.New("--from is required: a directory or a .tar, .tar.gz or .tgz file")
	}
	store, err := rootfs.OpenStore(*data)
	if err != nil {
		return err
	}
	cleanStaleData(*data)
	img, err := store.Build(ctx, name, rootfs.BuildOptions{
		From: *from, Base: *base, Compression: *comp, Progress: progressWriter(*quiet),
	})
	if err != nil {
		return err
	}
	fmt.Println(img.Digest)
	return nil
}

func cmdImageDefault(ctx context.Context, args []string) error {
	fs := newFlagSet("image default", "corral image default [NAME] [--no-python]",
		`Builds the default image (NAME defaults to "default") from what is already
on this Debian host, downloading nothing: the static busybox
(apt-get install busybox-static) with a symlink per applet, /etc/passwd with
root and the job user corral (1000), /tmp, /work (owned by 1000), and the
host's python3 (/usr/bin/python3 -> python3.N) with the shared libraries ldd
finds for it and its extension modules and its standard library without tests,
byte-compiled. Run as root. Building it again replaces it.`)
	data := dataFlag(fs)
	noPython := fs.Bool("no-python", false, "leave python3 out: busybox only")
	comp := fs.String("compression", "zstd", "squashfs compression: zstd, lz4 or gzip")
	quiet := fs.Bool("q", false, "print no progress")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	name, err := oneName(fs, pos, "default")
	if err != nil {
		return err
	}
	return buildFromTree(ctx, *data, name, *comp, progressWriter(*quiet), func(dir string) error {
		return rootfs.DefaultTree(dir, !*noPython)
	})
}

func cmdImageBusybox(ctx context.Context, args []string) error {
	fs := newFlagSet("image busybox", "corral image busybox [NAME]",
		`Builds a tiny image (NAME defaults to "busybox") holding only the host's
static busybox (apt-get install busybox-static) with a symlink per applet,
/etc/passwd with root and the job user corral (1000), /tmp and /work. Handy
for tests and smoke checks. Run as root.`)
	data := dataFlag(fs)
	quiet := fs.Bool("q", false, "print no progress")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	name, err := oneName(fs, pos, "busybox")
	if err != nil {
		return err
	}
	return buildFromTree(ctx, *data, name, "zstd", progressWriter(*quiet), rootfs.BusyboxTree)
}

// buildFromTree lays out a tree with makeTree in scratch space of the data
// dir, builds the image name from it, and removes the tree.
func buildFromTree(ctx context.Context, data, name, comp string, progress io.Writer, makeTree func(dir string) error) error {
	if err := rootfs.ValidateName(name); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: the image's files must be owned by root and /work by the job user")
	}
	store, err := rootfs.OpenStore(data)
	if err != nil {
		return err
	}
	cleanStaleData(data)
	// Named like Build's own scratch dirs, so CleanStale removes it if
	// this process dies.
	tmp, err := os.MkdirTemp(filepath.Join(store.Dir(), "tmp"), fmt.Sprintf("build-%d-", os.Getpid()))
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "root")
	if progress != nil {
		fmt.Fprintf(progress, "assembling the tree in %s\n", tree)
	}
	if err := makeTree(tree); err != nil {
		return err
	}
	img, err := store.Build(ctx, name, rootfs.BuildOptions{From: tree, Compression: comp, Progress: progress})
	if err != nil {
		return err
	}
	fmt.Println(img.Digest)
	return nil
}

func cmdImageList(ctx context.Context, args []string) error {
	fs := newFlagSet("image ls", "corral image ls [--json]",
		`Lists the images: name, digest (first 12 hex digits), number of layers,
size of the layers, and when the image was built. With --json, prints the
manifests as a JSON array instead.`)
	data := dataFlag(fs)
	asJSON := fs.Bool("json", false, "print the manifests as a JSON array")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(pos, " "))
	}
	store, err := rootfs.OpenStore(*data)
	if err != nil {
		return err
	}
	imgs, listErr := store.List()
	if imgs == nil {
		imgs = []*rootfs.Image{}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(imgs); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(tw, "NAME\tDIGEST\tLAYERS\tSIZE\tCREATED")
		for _, img := range imgs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", img.Name, rootfs.ShortDigest(img.Digest), len(img.Layers),
				rootfs.FormatSize(img.Size), img.Created.Local().Format("2006-01-02 15:04:05"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if listErr != nil {
		// One line per unreadable manifest, then a one-line error.
		var n int
		for _, line := range strings.Split(listErr.Error(), "\n") {
			fmt.Fprintf(os.Stderr, "corral image ls: skipped: %s\n", line)
			n++
		}
		return fmt.Errorf("%d image(s) could not be read ('corral image rm NAME' removes one)", n)
	}
	return nil
}

func cmdImageInspect(ctx context.Context, args []string) error {
	fs := newFlagSet("image inspect", "corral image inspect NAME [--verify]",
		`Prints the manifest of the image NAME as JSON: its digest, its layers
(bottom first, with digest, size and path), when it was built, its
compression, source and base. With --verify, also re-reads every layer and
checks it against its sha256 digest first.`)
	data := dataFlag(fs)
	verify := fs.Bool("verify", false, "check every layer against its digest (reads the whole image)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	name, err := oneName(fs, pos, "")
	if err != nil {
		return err
	}
	store, err := rootfs.OpenStore(*data)
	if err != nil {
		return err
	}
	if *verify {
		if err := store.Verify(name); err != nil {
			return err
		}
	}
	img, err := store.Get(name)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(img)
}

func cmdImageRemove(ctx context.Context, args []string) error {
	fs := newFlagSet("image rm", "corral image rm NAME...",
		`Removes the named images, then every layer no remaining image uses.
Sandboxes that have a removed image mounted keep using it until they
release it.`)
	data := dataFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return errors.New("no image name given")
	}
	store, err := rootfs.OpenStore(*data)
	if err != nil {
		return err
	}
	for _, name := range pos {
		err := store.Remove(name)
		if err != nil && !errors.Is(err, rootfs.ErrLayersKept) {
			return err
		}
		fmt.Println("removed", name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "corral image rm: warning: %v\n", err)
		}
	}
	return nil
}

// cleanStaleData removes what killed corral processes left in the data
// directory (their build directories, mounts and loop devices), as a
// worker does at start; a failure is only a warning.
func cleanStaleData(data string) {
	if err := rootfs.CleanStale(data); err != nil {
		fmt.Fprintf(os.Stderr, "corral: cleaning up what an earlier run left in %s: %v\n", data, err)
	}
}

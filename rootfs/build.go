package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BuildOptions says what Build makes an image from.
type BuildOptions struct {
	// From is the directory, or the .tar, .tar.gz or .tgz archive, that
	// becomes the image's top layer. Required. An archive is extracted as
	// root with GNU tar, owners and modes kept: it must come from the
	// operator, never from a job.
	From string
	// Base optionally names an image whose layers go below the new one.
	// Default: none, the image has a single layer.
	Base string
	// Compression is the squashfs compressor: "zstd" (default), "lz4"
	// (fastest to read, biggest) or "gzip".
	Compression string
	// Progress, when set, receives one line per step of the build.
	// Default: nil, silent.
	Progress io.Writer
}

// compressorArgs returns the mksquashfs arguments for a compressor name.
func compressorArgs(name string) (string, []string, error) {
	switch name {
	case "", "zstd":
		// Level 15, mksquashfs's default, stated for clarity. On the
		// default image (busybox + python): 15 is 7% smaller than 9 and
		// 1% bigger than 19, which takes three times as long to build.
		// Reading speed does not depend on the level.
		return "zstd", []string{"-comp", "zstd", "-Xcompression-level", "15"}, nil
	case "lz4":
		return "lz4", []string{"-comp", "lz4"}, nil
	case "gzip":
		return "gzip", []string{"-comp", "gzip", "-Xcompression-level", "9"}, nil
	}
	return "", nil, fmt.Errorf("unknown compression %q: use zstd, lz4 or gzip", name)
}

// archiveSuffixes are the file names Build extracts with tar.
var archiveSuffixes = []string{".tar", ".tar.gz", ".tgz"}

// Build makes the image called name from opt.From, on top of the layers of
// opt.Base if set, and stores it. An existing image of that name is
// replaced (see the package documentation). Build needs mksquashfs from
// squashfs-tools, and GNU tar for archives; it does not need root for a
// directory, but files keep their owners only when run as root.
func (s *Store) Build(ctx context.Context, name string, opt BuildOptions) (*Image, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	comp, compArgs, err := compressorArgs(opt.Compression)
	if err != nil {
		return nil, err
	}
	if opt.From == "" {
		return nil, errors.New("no source: give a directory or a .tar, .tar.gz or .tgz file")
	}
	named, err := filepath.Abs(opt.From)
	if err != nil {
		return nil, err
	}
	// mksquashfs takes a symlink given as its source for the tree's only
	// entry: give it what the link names.
	from := named
	if r, err := filepath.EvalSymlinks(named); err == nil {
		from = r
	}
	fi, err := os.Stat(from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("source %s does not exist", from)
	}
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	archive := false
	if !fi.IsDir() {
		for _, suf := range archiveSuffixes {
			if strings.HasSuffix(named, suf) || strings.HasSuffix(from, suf) {
				archive = fi.Mode().IsRegular()
			}
		}
		if !archive {
			return nil, fmt.Errorf("source %s is neither a directory nor a .tar, .tar.gz or .tgz file", from)
		}
	}
	mksquashfs, err := exec.LookPath("mksquashfs")
	if err != nil {
		return nil, errors.New("mksquashfs not found in PATH: install squashfs-tools (apt-get install squashfs-tools)")
	}
	var base *Image
	if opt.Base != "" {
		if base, err = s.Get(opt.Base); err != nil {
			return nil, fmt.Errorf("base: %w", err)
		}
		if len(base.Layers)+1 > MaxLayers {
			return nil, fmt.Errorf("base image %s has %d layers: an image may have at most %d", opt.Base, len(base.Layers), MaxLayers)
		}
	}
	progress := func(format string, args ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, format+"\n", args...)
		}
	}

	work, err := os.MkdirTemp(s.tmpDir(), fmt.Sprintf("build-%d-", os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	defer os.RemoveAll(work)

	src := from
	if archive {
		src = filepath.Join(work, "root")
		if err := os.Mkdir(src, 0o755); err != nil {
			return nil, err
		}
		progress("extracting %s", from)
		if err := extractTar(ctx, from, src); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	progress("building a %s squashfs layer from %s", comp, src)
	out := filepath.Join(work, "layer.sqfs")
	args := append([]string{src, out, "-noappend", "-quiet", "-no-progress",
		// Mount points inside the source become empty directories, so a
		// tree with /proc mounted in it does not pull in the host's /proc.
		"-one-file-system",
		// An unreadable file fails the build instead of going missing.
		"-exit-on-error",
		// Not NFS-exported: saves the export table.
		"-no-exports",
		// A fixed creation time: the same tree gives the same layer. The
		// root's time too: a tar's is the time of its extraction.
		"-mkfs-time", "0", "-root-time", "0",
		// Every job must be able to enter /: a source directory made
		// under a strict umask (or a tar's "./" of a private directory)
		// would lock them all out.
		"-root-mode", "0755",
	}, compArgs...)
	if err := runTool(ctx, mksquashfs, args...); err != nil {
		return nil, err
	}
	digest, size, err := syncAndHash(out)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if err := checkSquashfs(out); err != nil {
		return nil, fmt.Errorf("mksquashfs wrote a bad file: %w", err)
	}
	progress("layer %s: %s in %s", ShortDigest(digest), FormatSize(size), time.Since(start).Round(time.Millisecond))

	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	var layers []Layer
	if base != nil {
		// The base may have been removed while mksquashfs ran.
		for _, l := range base.Layers {
			if _, err := os.Stat(l.Path); err != nil {
				return nil, fmt.Errorf("base image %s changed during the build: layer %s: %v", opt.Base, l.Digest, err)
			}
		}
		layers = append(layers, base.Layers...)
	}
	hexd, _ := parseDigest(digest)
	dst := s.layerPath(hexd)
	if fi, err := os.Stat(dst); err == nil && fi.Size() == size {
		progress("layer %s already in the store", ShortDigest(digest))
	} else {
		if err := os.Rename(out, dst); err != nil {
			return nil, fmt.Errorf("store layer: %w", err)
		}
		if err := syncDir(s.layersDir()); err != nil {
			return nil, err
		}
	}
	layers = append(layers, Layer{Digest: digest, Size: size, Path: dst})

	img := &Image{
		Name:        name,
		Layers:      layers,
		Digest:      imageDigest(layers),
		Created:     time.Now().UTC(),
		Compression: comp,
		Source:      from,
		Base:        opt.Base,
	}
	for _, l := range layers {
		img.Size += l.Size
	}
	old, oldErr := s.readManifest(name)
	b, err := jsonIndent(img)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(s.manifestPath(name), b, 0o644); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	if old != nil || oldErr != nil && !errors.Is(oldErr, ErrImageNotFound) {
		if old != nil {
			progress("replaced image %s (was %s)", name, ShortDigest(old.Digest))
		} else {
			progress("replaced image %s (its manifest was unreadable: %v)", name, oldErr)
		}
		if err := s.collectLayers(); err != nil {
			progress("warning: removing unused layers: %v", err)
		}
	}
	progress("image %s %s: %d layer(s), %s", name, ShortDigest(img.Digest), len(img.Layers), FormatSize(img.Size))
	return img, nil
}

// extractTar extracts a tar archive (gzip-compressed or not) into dir with
// GNU tar, keeping numeric owners and modes.
func extractTar(ctx context.Context, archive, dir string) error {
	tar, err := exec.LookPath("tar")
	if err != nil {
		return errors.New("tar not found in PATH: install GNU tar (apt-get install tar)")
	}
	ver, err := exec.CommandContext(ctx, tar, "--version").Output()
	if err != nil || !bytes.Contains(ver, []byte("GNU tar")) {
		return fmt.Errorf("%s is not GNU tar, which extracting archives needs", tar)
	}
	// GNU tar strips leading "/", skips members with "..", creates links
	// that point out of the tree only once everything else is extracted
	// (so no member is written through one), and reads gzip by itself.
	// --numeric-owner: owners are the archive's uids, not looked up in the
	// host's /etc/passwd. Owners are kept only as root; others get theirs.
	args := []string{"--extract", "--file", archive, "--directory", dir, "--numeric-owner", "--same-permissions"}
	if os.Geteuid() == 0 {
		args = append(args, "--same-owner")
	}
	return runTool(ctx, tar, args...)
}

// runTool runs a program, and on failure returns an error with the end of
// what it wrote.
func runTool(ctx context.Context, path string, args ...string) error {
	var out tailBuffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", filepath.Base(path), context.Cause(ctx))
		}
		msg := strings.Join(strings.Fields(strings.TrimSpace(out.String())), " ")
		if msg != "" {
			return fmt.Errorf("%s failed (%v): %s", filepath.Base(path), err, msg)
		}
		return fmt.Errorf("%s failed: %v", filepath.Base(path), err)
	}
	return nil
}

// tailBuffer keeps the last 2 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	const max = 2048
	t.b = append(t.b, p...)
	if len(t.b) > max {
		t.b = append(t.b[:0], t.b[len(t.b)-max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// syncAndHash fsyncs a file and returns its digest and size.
func syncAndHash(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return "", 0, err
	}
	return hashFile(path)
}

// ShortDigest returns the first 12 hex digits of a digest.
func ShortDigest(d string) string {
	h := strings.TrimPrefix(d, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// FormatSize formats a byte count for people.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

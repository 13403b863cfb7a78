package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultDataDir is the data directory used when none is given.
const DefaultDataDir = "/var/lib/corral"

// MaxLayers is the most layers one image may stack. It keeps an overlay's
// lowerdir option (every layer's mount point) within the one page that
// mount(2) accepts.
const MaxLayers = 32

var (
	// ErrImageNotFound: no image has that name.
	ErrImageNotFound = errors.New("image not found")
	// ErrInvalidName: the name is not a valid image name (see ValidateName).
	ErrInvalidName = errors.New("invalid image name")
	// ErrCorruptImage: a manifest or a layer is unreadable, truncated, not
	// squashfs, or does not match its digest.
	ErrCorruptImage = errors.New("corrupt image")
	// ErrImageChanged: a layer file of the image is gone: the image was
	// removed or rebuilt since it was read. Read it again.
	ErrImageChanged = errors.New("image removed or rebuilt meanwhile")
	// ErrUnsupported: mounting images needs Linux.
	ErrUnsupported = errors.New("not supported on this platform")
)

// Layer is one squashfs file of an image.
type Layer struct {
	// Digest is "sha256:<hex>" of the squashfs file.
	Digest string `json:"digest"`
	// Size is the size of the squashfs file in bytes.
	Size int64 `json:"size"`
	// Path is the file's path on this host. It is derived from the store's
	// directory when a manifest is read, whatever the manifest says.
	Path string `json:"path,omitempty"`
}

// Image is a named stack of layers.
type Image struct {
	// Name is the image's name (see ValidateName).
	Name string `json:"name"`
	// Digest is "sha256:<hex>" over the ordered layer digests, bottom first,
	// each followed by "\n".
	Digest string `json:"digest"`
	// Layers are the image's layers, bottom first.
	Layers []Layer `json:"layers"`
	// Created is when the image was built (UTC).
	Created time.Time `json:"created"`
	// Size is the sum of the layers' sizes in bytes.
	Size int64 `json:"size"`
	// Compression is the squashfs compressor of the top layer: zstd, lz4 or gzip.
	Compression string `json:"compression"`
	// Source is the absolute path of the directory or archive the top
	// layer was built from.
	Source string `json:"source"`
	// Base is the name of the image the lower layers came from, empty when
	// the image has a single layer. Informational: the layers are recorded
	// by digest, so rebuilding the base does not change this image.
	Base string `json:"base,omitempty"`
}

// ValidateName reports whether name can name an image: 1 to 64 characters,
// lower-case letters, digits, '.', '_' and '-', starting with a letter or a
// digit. Image names come from jobs, so this is what keeps them from naming
// a path. The error wraps ErrInvalidName.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("%w %q: must be 1 to 64 characters", ErrInvalidName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("%w %q: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", ErrInvalidName, name)
		}
	}
	return nil
}

// parseDigest returns the hex part of a "sha256:<64 lower-case hex>" digest.
func parseDigest(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return "", fmt.Errorf("bad digest %q", d)
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("bad digest %q", d)
		}
	}
	return h, nil
}

// imageDigest is the digest of an image made of layers, bottom first.
func imageDigest(layers []Layer) string {
	h := sha256.New()
	for _, l := range layers {
		io.WriteString(h, l.Digest+"\n")
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// RunDir returns the run directory of this process in dataDir
// (DefaultDataDir when empty): <data>/run/<pid>, the directory to give
// NewMounter, and the one CleanStale removes once the process is gone.
func RunDir(dataDir string) string {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	return filepath.Join(dataDir, "run", strconv.Itoa(os.Getpid()))
}

// Store holds images by name and layers by digest under a data directory.
// Its methods are safe for concurrent use, also by several processes.
type Store struct {
	dir string

	// manifests caches decoded manifests by name, each with the identity
	// of the file it was read from: a job's lookup costs one stat while
	// the manifest is unchanged (it is replaced by rename, never edited).
	mu        sync.Mutex
	manifests map[string]cachedManifest
}

type cachedManifest struct {
	fi  fs.FileInfo
	img Image
}

// sameVersion reports whether a and b describe the same version of a file.
func sameVersion(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// OpenStore opens the image store of dataDir (DefaultDataDir when empty),
// creating its directories if needed.
func OpenStore(dataDir string) (*Store, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir}
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{
		{dir, 0o755},
		{s.imagesDir(), 0o755},
		{filepath.Join(dir, "layers"), 0o700},
		{s.layersDir(), 0o700},
		{s.tmpDir(), 0o700},
	} {
		if err := os.Mkdir(d.path, d.mode); err != nil && !errors.Is(err, fs.ErrExist) {
			if errors.Is(err, fs.ErrNotExist) && d.path == dir {
				err = os.MkdirAll(dir, d.mode)
			}
			if err != nil {
				return nil, fmt.Errorf("open image store: %w", err)
			}
		}
	}
	return s, nil
}

// Dir returns the store's data directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) imagesDir() string { return filepath.Join(s.dir, "images") }
func (s *Store) layersDir() string { return filepath.Join(s.dir, "layers", "sha256") }
func (s *Store) tmpDir() string    { return filepath.Join(s.dir, "tmp") }

func (s *Store) manifestPath(name string) string {
	return filepath.Join(s.imagesDir(), name+".json")
}

func (s *Store) layerPath(hex string) string {
	return filepath.Join(s.layersDir(), hex+".sqfs")
}

// lock takes the store's exclusive lock, shared with other processes.
func (s *Store) lock() (unlock func(), err error) {
	return lockFile(filepath.Join(s.imagesDir(), ".lock"))
}

// Get returns the image called name. It checks that the manifest is
// consistent and every layer file is present with its recorded size; an
// unknown name gives an error wrapping ErrImageNotFound, a bad one
// ErrInvalidName, a damaged image ErrCorruptImage.
func (s *Store) Get(name string) (*Image, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	img, err := s.readManifest(name)
	if err != nil {
		return nil, err
	}
	for _, l := range img.Layers {
		fi, err := os.Stat(l.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: image %s: layer %s: %v", ErrCorruptImage, name, l.Digest, err)
		}
		if fi.Size() != l.Size {
			return nil, fmt.Errorf("%w: image %s: layer %s is %d bytes, manifest says %d", ErrCorruptImage, name, l.Digest, fi.Size(), l.Size)
		}
	}
	return img, nil
}

// readManifest reads and checks the manifest of name, filling the layers'
// paths.
func (s *Store) readManifest(name string) (*Image, error) {
	path := s.manifestPath(name)
	fi, err := os.Stat(path)
	if err == nil {
		s.mu.Lock()
		c, ok := s.manifests[name]
		s.mu.Unlock()
		if ok && sameVersion(c.fi, fi) {
			img := c.img
			img.Layers = slices.Clone(c.img.Layers)
			return &img, nil
		}
	}
	img, err := s.decodeManifest(name, path)
	if err != nil || fi == nil {
		return img, err
	}
	// Keep it only if the file did not change while it was read.
	if again, err := os.Stat(path); err == nil && sameVersion(again, fi) {
		c := cachedManifest{fi: fi, img: *img}
		c.img.Layers = slices.Clone(img.Layers)
		s.mu.Lock()
		if s.manifests == nil {
			s.manifests = make(map[string]cachedManifest)
		}
		s.manifests[name] = c
		s.mu.Unlock()
	}
	return img, nil
}

// decodeManifest reads and checks the manifest at path.
func (s *Store) decodeManifest(name, path string) (*Image, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrImageNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("%w: image %s: manifest: %v", ErrCorruptImage, name, err)
	}
	if img.Name != name {
		return nil, fmt.Errorf("%w: image %s: manifest names %q", ErrCorruptImage, name, img.Name)
	}
	if len(img.Layers) == 0 || len(img.Layers) > MaxLayers {
		return nil, fmt.Errorf("%w: image %s: %d layers", ErrCorruptImage, name, len(img.Layers))
	}
	for i := range img.Layers {
		h, err := parseDigest(img.Layers[i].Digest)
		if err != nil {
			return nil, fmt.Errorf("%w: image %s: layer %d: %v", ErrCorruptImage, name, i, err)
		}
		img.Layers[i].Path = s.layerPath(h)
	}
	if d := imageDigest(img.Layers); d != img.Digest {
		return nil, fmt.Errorf("%w: image %s: digest %s does not match its layers (%s)", ErrCorruptImage, name, img.Digest, d)
	}
	return &img, nil
}

// List returns every image, sorted by name. An image whose manifest cannot
// be read is left out and named in the returned error, so one damaged
// manifest does not hide the others.
func (s *Store) List() ([]*Image, error) {
	names, err := s.names()
	if err != nil {
		return nil, err
	}
	var imgs []*Image
	var errs []error
	for _, n := range names {
		img, err := s.readManifest(n)
		switch {
		case errors.Is(err, ErrImageNotFound): // removed meanwhile
		case err != nil:
			errs = append(errs, err)
		default:
			imgs = append(imgs, img)
		}
	}
	return imgs, errors.Join(errs...)
}

// names returns the names of the manifests in the store, sorted.
func (s *Store) names() ([]string, error) {
	ents, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var names []string
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && e.Type().IsRegular() && ValidateName(n) == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// ErrLayersKept: unused layers were not deleted, because some image's
// manifest could not be read (its layers unknown). The operation that
// reports it did its own part.
var ErrLayersKept = errors.New("unused layers kept: a manifest cannot be read")

// Remove deletes the image called name, then every layer that no remaining
// image uses (ErrLayersKept when that cannot be told). Sandboxes that have its layers mounted keep them until they
// release them.
func (s *Store) Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	err = os.Remove(s.manifestPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrImageNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("remove image %s: %w", name, err)
	}
	if err := syncDir(s.imagesDir()); err != nil {
		return err
	}
	return s.collectLayers()
}

// collectLayers deletes the layer files no manifest refers to. The caller
// holds the store lock, under which every layer in the directory belongs to
// a committed image or to none. When any manifest cannot be read, nothing is
// deleted: its layers are unknown.
func (s *Store) collectLayers() error {
	names, err := s.names()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, n := range names {
		img, err := s.readManifest(n)
		if errors.Is(err, ErrImageNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: image %s: %v", ErrLayersKept, n, err)
		}
		for _, l := range img.Layers {
			used[filepath.Base(l.Path)] = true
		}
	}
	ents, err := os.ReadDir(s.layersDir())
	if err != nil {
		return fmt.Errorf("collect layers: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sqfs") || used[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(s.layersDir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Verify re-reads every layer of the image called name and checks its
// sha256 against the manifest. It reads the whole image, so it is for
// operators and for images received from elsewhere, not for every mount.
func (s *Store) Verify(name string) error {
	img, err := s.Get(name)
	if err != nil {
		return err
	}
	for _, l := range img.Layers {
		d, _, err := hashFile(l.Path)
		if err != nil {
			return fmt.Errorf("%w: image %s: layer %s: %v", ErrCorruptImage, name, l.Digest, err)
		}
		if d != l.Digest {
			return fmt.Errorf("%w: image %s: layer %s has digest %s", ErrCorruptImage, name, l.Digest, d)
		}
		if err := checkSquashfs(l.Path); err != nil {
			return err
		}
	}
	return nil
}

// hashFile returns the "sha256:<hex>" digest and the size of a file.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, synced, then renamed over path; the directory is synced too.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// jsonIndent is the manifest encoding: indented JSON ending in a newline.
func jsonIndent(img *Image) ([]byte, error) {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// syncDir fsyncs a directory so renames and removals in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// squashfs superblock fields used to tell a squashfs file from something
// else, and a whole one from a truncated one.
const (
	squashfsMagic     = "hsqs"
	squashfsSuperSize = 96
)

// checkSquashfs reads the superblock of a squashfs file. It returns an
// error wrapping ErrCorruptImage when the file is not squashfs version 4 or
// is shorter than the superblock says.
func checkSquashfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptImage, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptImage, path, err)
	}
	return checkSuperblock(f, fi.Size(), path)
}

// checkSuperblock checks the squashfs superblock read from r, a file of
// size bytes named path.
func checkSuperblock(r io.ReaderAt, size int64, path string) error {
	var sb [squashfsSuperSize]byte
	if _, err := r.ReadAt(sb[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s: too short for squashfs (%d bytes)", ErrCorruptImage, path, size)
		}
		return fmt.Errorf("%w: %s: %v", ErrCorruptImage, path, err)
	}
	if string(sb[0:4]) != squashfsMagic {
		return fmt.Errorf("%w: %s: not a squashfs file (magic %q)", ErrCorruptImage, path, sb[0:4])
	}
	le16 := func(o int) uint64 { return uint64(sb[o]) | uint64(sb[o+1])<<8 }
	le64 := func(o int) uint64 {
		var v uint64
		for i := 7; i >= 0; i-- {
			v = v<<8 | uint64(sb[o+i])
		}
		return v
	}
	if major := le16(28); major != 4 {
		return fmt.Errorf("%w: %s: squashfs version %d, want 4", ErrCorruptImage, path, major)
	}
	if used := le64(40); used > uint64(size) {
		return fmt.Errorf("%w: %s: truncated: %d bytes, superblock says %d", ErrCorruptImage, path, size, used)
	}
	return nil
}

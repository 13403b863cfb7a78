package isolate

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// collectTree makes a /work-like tree in a temporary directory and returns
// an O_PATH fd of it.
func collectTree(t *testing.T, chain int) (string, int) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"out.txt", "a.txt", "logs/a.log", "logs/deep/b.log", "logs/deep/er/c.log", "src/x.c", "src/y.c", "b/c/d.txt"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deep := filepath.Join(dir, strings.Repeat("d/", chain))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "logs/link.log")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "logs/fifo.log"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return dir, fd
}

// naiveCollect is what collect means, the slow way: every entry below dir
// whose path or a directory it is in matches a pattern.
func naiveCollect(t *testing.T, dir string, patterns []string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, pat := range patterns {
			for r := rel; r != "."; r = path.Dir(r) {
				if ok, _ := path.Match(pat, r); ok {
					out = append(out, rel)
					return nil
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func collected(t *testing.T, work int, patterns []string, stats *collectStats) []string {
	t.Helper()
	entries, fds, err := collectFiles(work, patterns, MaxCollectFiles, stats)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(fds)
	var out []string
	for _, e := range entries {
		out = append(out, e.Path)
	}
	slices.Sort(out)
	return out
}

// Collecting matches what the patterns mean (a path or a directory it is
// in), whichever way a pattern reaches: a literal, globs, a directory, a
// character class standing for the "/".
func TestCollectMatches(t *testing.T) {
	dir, work := collectTree(t, 40)
	for _, patterns := range [][]string{
		{"out.txt"}, {"*.txt"}, {"logs"}, {"logs/*"}, {"logs/deep"}, {"logs/*/*.log"},
		{"*"}, {"src/*.c", "b"}, {"b[/]c"}, {"d"}, {"d/d/d"}, {"nothing"}, {"?/c/*"},
		{"logs/deep/er/c.log", "a.txt"},
	} {
		if got, want := collected(t, work, patterns, nil), naiveCollect(t, dir, patterns); !slices.Equal(got, want) {
			t.Errorf("%q: collected %q, want %q", patterns, got, want)
		}
	}
}

// A deep chain of directories that no pattern reaches is not walked.
// Before, every entry was matched against every pattern once for each
// directory it is in: quadratic in a job's nesting, and all of it walked.
func TestCollectSkipsUnreachable(t *testing.T) {
	_, work := collectTree(t, 1000)
	var st collectStats
	if got := collected(t, work, []string{"out.txt", "logs/*/*.log"}, &st); !slices.Equal(got, []string{"logs/deep/b.log", "out.txt"}) {
		t.Errorf("collected %q", got)
	}
	// 20 entries in the tree outside the chain; the chain's first
	// directory is the only one of it visited.
	if st.visited > 25 {
		t.Errorf("visited %d entries for two shallow patterns", st.visited)
	}
	st = collectStats{}
	collected(t, work, []string{"d"}, &st) // the chain is collected: all of it is walked
	if st.visited < 1000 {
		t.Errorf("visited %d entries collecting the whole chain", st.visited)
	}
}

// A collect that runs out of time reports where it stopped.
func TestCollectBudget(t *testing.T) {
	_, work := collectTree(t, 600)
	budget := collectBudget
	collectBudget = 0
	t.Cleanup(func() { collectBudget = budget })
	entries, fds, err := collectFiles(work, []string{"*"}, MaxCollectFiles, nil)
	closeAll(fds)
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if last.Path != "(the rest of /work)" || !strings.Contains(last.Skipped, "collecting stopped after") {
		t.Errorf("last entry %+v, want the stop", last)
	}
}

// Names long enough to fill the reply stop the collect with a note, instead
// of a reply too big for the parent (which broke the sandbox).
func TestCollectNamesBudget(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("\x01", 240) // 6 bytes each in JSON
	deep := filepath.Join(dir, long, long, long, long)
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		p := filepath.Join(deep, fmt.Sprintf("%s%03d", long, i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	entries, fds, err := collectFiles(fd, []string{"*"}, MaxCollectFiles, nil)
	closeAll(fds)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if len(b) > maxReplyNames+4096 || last.Path != "(the rest of /work)" || !strings.Contains(last.Skipped, "fill the reply") {
		t.Errorf("%d entries, %d bytes of JSON, last %+v", len(entries), len(b), last)
	}
}

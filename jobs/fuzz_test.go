package jobs

import (
	"encoding/json"
	"errors"
	"path"
	"strings"
	"testing"
)

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		protocolJob,
		`{"cmd":["true"]}`,
		`{"cmd":["x"],"steps":[{"cmd":["y"]}]}`,
		`{"steps":[{"cmd":["a"],"env":{"A":"1"},"cwd":"/w","stdin_b64":"YQ==","limits":{"pids":1},"expect_stdout":"","compare":"tokens","continue_on_failure":true}]}`,
		`{"cmd":["x"],"files":[{"path":"a/b","content_b64":"AA==","mode":"0755"},{"path":"c","object":"b/n","mode":420}]}`,
		`{"cmd":["x"],"collect":["*.txt","a/[b"],"reply_to":"corral.results.x","expires_at":"2026-01-02T15:04:05Z"}`,
		`{"cmd":["x"],"labels":{"a":"b"},"network":"egress","seccomp":"strict","stream_output":true}`,
		`{"files":[{"path":"../x"}],"cmd":[]}`,
		`{"steps":null,"cmd":null}`,
		`[]`, `null`, `{`, ``, `{"id":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Peek(data)
		j, err := Decode(data)
		if err != nil {
			if j != nil {
				t.Fatal("Decode returned a job with an error")
			}
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("Decode error %v is a %T, not a *RejectError", err, err)
			}
			return
		}
		if err := j.Validate(MaxLimits()); err != nil {
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("Validate error %v is a %T, not a *RejectError", err, err)
			}
			return
		}
		// A valid job keeps its promises ...
		if len(j.Steps) < 1 || len(j.Steps) > MaxSteps {
			t.Fatalf("valid job with %d steps", len(j.Steps))
		}
		for _, fl := range j.Files {
			if strings.HasPrefix(fl.Path, "/") || oracleDotDot(fl.Path) {
				t.Fatalf("valid job with file path %q", fl.Path)
			}
		}
		for _, c := range j.Collect {
			if strings.HasPrefix(c, "/") || oracleDotDot(c) {
				t.Fatalf("valid job with collect %q", c)
			}
		}
		for _, s := range j.Steps {
			if s.Name == "" || len(s.Cmd) == 0 {
				t.Fatalf("valid job with step %+v", s)
			}
		}
		// ... and survives a round trip through its own JSON.
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		j2, err := Decode(b)
		if err != nil {
			t.Fatalf("re-Decode of %s: %v", b, err)
		}
		if err := j2.Validate(MaxLimits()); err != nil {
			t.Fatalf("re-Validate of %s: %v", b, err)
		}
	})
}

func FuzzSafeRelPath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "./a", "../a", "a/../../b", "/a", "", ".", "a//b/", "..a", "a/..", "a\x00", "*/[a-z]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := SafeRelPath(p)
		if err != nil {
			if c != "" {
				t.Fatalf("SafeRelPath(%q) = %q with error %v", p, c, err)
			}
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("SafeRelPath(%q): %v does not match ErrUnsafePath", p, err)
			}
			return
		}
		if c == "" || c == "." || strings.HasPrefix(c, "/") || oracleDotDot(c) || strings.IndexByte(c, 0) >= 0 {
			t.Fatalf("SafeRelPath(%q) = %q escapes", p, c)
		}
		if path.Clean(c) != c {
			t.Fatalf("SafeRelPath(%q) = %q is not clean", p, c)
		}
		// Joined under a root, it stays under the root.
		if j := path.Join("/work", c); !strings.HasPrefix(j, "/work/") {
			t.Fatalf("SafeRelPath(%q) = %q joins to %q", p, c, j)
		}
		// Cleaning is idempotent.
		if c2, err := SafeRelPath(c); err != nil || c2 != c {
			t.Fatalf("SafeRelPath(%q) = %q, %v", c, c2, err)
		}
	})
}

// oracleDotDot reports (independently of the package) whether p has a ".." element.
func oracleDotDot(p string) bool {
	for el := range strings.SplitSeq(p, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

package jobs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// decodeValidate runs what a worker runs on a job message.
func decodeValidate(data string) (*Job, error) {
	j, err := Decode([]byte(data))
	if err != nil {
		return nil, err
	}
	return j, j.Validate(MaxLimits())
}

// wrap puts a step object into a minimal job.
func wrap(step string) string { return `{"steps":[` + step + `]}` }

// withFile puts a file object into a minimal job.
func withFile(file string) string { return `{"cmd":["true"],"files":[` + file + `]}` }

// manyLabels is n labels "l0":"v", "l1":"v", ….
func manyLabels(n int) string {
	l := make([]string, n)
	for i := range l {
		l[i] = fmt.Sprintf(`"l%d":"v"`, i)
	}
	return strings.Join(l, ",")
}

// with adds top-level members to a minimal shorthand job.
func with(members string) string { return `{"cmd":["true"],` + members + `}` }

// decodeCase is a job message and what Decode + Validate make of it.
type decodeCase struct {
	name, json string
	// field and reason (a substring) of the expected *RejectError;
	// reason "" means the job is valid.
	field, reason string
}

// decodeCases is the corpus of TestDecodeValidate, which TestJobSchemaAgrees
// also runs through the JSON Schema.
func decodeCases() []decodeCase {
	id64 := strings.Repeat("a", 64)
	steps := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = `{"cmd":["true"]}`
		}
		return `{"steps":[` + strings.Join(s, ",") + `]}`
	}
	return []decodeCase{
		// Valid jobs.
		{"shorthand", `{"cmd":["true"]}`, "", ""},
		{"protocol example", protocolJob, "", ""},
		{"16 steps", steps(16), "", ""},
		{"id 64", `{"id":"` + id64 + `","cmd":["x"]}`, "", ""},
		{"id chars", `{"id":"A-z_0-9","cmd":["x"]}`, "", ""},
		{"id empty", `{"id":"","cmd":["x"]}`, "id", "must not be empty"},
		{"id null", `{"id":null,"cmd":["x"]}`, "", ""},
		{"label null", with(`"labels":{"k":null}`), `labels["k"]`, "must be a string, not null"},
		{"env null", wrap(`{"cmd":["x"],"env":{"A":null}}`), `steps[0].env["A"]`, "must be a string, not null"},
		{"image empty", with(`"image":""`), "image", "must not be empty"},
		{"network empty", with(`"network":""`), "network", "must not be empty"},
		{"seccomp empty", with(`"seccomp":""`), "seccomp", "must not be empty"},
		{"reply_to empty", with(`"reply_to":""`), "reply_to", "must not be empty"},
		{"compare empty", with(`"compare":""`), "compare", "must not be empty"},
		{"step name empty", wrap(`{"name":"","cmd":["x"]}`), "steps[0].name", "must not be empty"},
		{"object empty", withFile(`{"path":"a","object":""}`), "files[0].object", "must not be empty"},
		{"limit as a whole float", with(`"limits":{"wall_time_ms":2000.0,"memory_bytes":2.5e8}`), "", ""},
		{"limit with a fraction", with(`"limits":{"wall_time_ms":2000.5}`), "limits.wall_time_ms", "integer"},
		{"limit as a string", with(`"limits":{"wall_time_ms":"2000"}`), "limits.wall_time_ms", "integer"},
		{"limit past 2^53 as a float", with(`"limits":{"memory_bytes":1e300}`), "limits.memory_bytes", "integer"},
		{"image tag", with(`"image":"python:3.12"`), "", ""},
		{"image digest", with(`"image":"sha256:0123abc"`), "", ""},
		{"file content", withFile(`{"path":"a.txt","content":"x"}`), "", ""},
		{"file empty content", withFile(`{"path":"a.txt","content":""}`), "", ""},
		{"file b64", withFile(`{"path":"a.bin","content_b64":"AAEC"}`), "", ""},
		{"file object", withFile(`{"path":"big","object":"corral-files/x/y"}`), "", ""},
		{"file nested", withFile(`{"path":"src/pkg/main.go","content":"x"}`), "", ""},
		{"file dots in name", withFile(`{"path":"..a/b..","content":"x"}`), "", ""},
		{"file null other", withFile(`{"path":"a","content":"x","object":null}`), "", ""},
		{"mode int", withFile(`{"path":"a","content":"","mode":493}`), "", ""},
		{"mode string", withFile(`{"path":"a","content":"","mode":"0755"}`), "", ""},
		{"mode string no zero", withFile(`{"path":"a","content":"","mode":"755"}`), "", ""},
		{"mode max", withFile(`{"path":"a","content":"","mode":"7777"}`), "", ""},
		{"mode zero", withFile(`{"path":"a","content":"","mode":0}`), "", ""},
		{"env", wrap(`{"cmd":["x"],"env":{"A":"1","B_2":"","LANG":"C.UTF-8"}}`), "", ""},
		{"cwd", wrap(`{"cmd":["x"],"cwd":"/work/sub"}`), "", ""},
		{"cwd root", wrap(`{"cmd":["x"],"cwd":"/"}`), "", ""},
		{"stdin", wrap(`{"cmd":["x"],"stdin":"a\u0000b"}`), "", ""},
		{"stdin_b64", wrap(`{"cmd":["x"],"stdin_b64":"aGkK"}`), "", ""},
		{"collect", with(`"collect":["out.txt","*.log","out/*/[a-c]?.txt","dir"]`), "", ""},
		{"network none", with(`"network":"none"`), "", ""},
		{"network egress", with(`"network":"egress"`), "", ""},
		{"egress allow", with(`"network":"egress","egress_allow":["203.0.113.0/24","198.51.100.7:443","[2001:db8::/32]:53","192.0.2.1"]`), "", ""},
		{"seccomp default", with(`"seccomp":"default"`), "", ""},
		{"seccomp strict", with(`"seccomp":"strict"`), "", ""},
		{"reply_to results", with(`"reply_to":"corral.results.x"`), "", ""},
		{"reply_to inbox", with(`"reply_to":"_INBOX.abc.123"`), "", ""},
		{"reply_to similar prefix", with(`"reply_to":"corral.jobsx.a"`), "", ""},
		{"reply_to unicode", with(`"reply_to":"résultats.1"`), "", ""},
		{"expires_at", with(`"expires_at":"2026-01-02T15:04:05Z"`), "", ""},
		{"expires_at offset", with(`"expires_at":"2026-01-02T15:04:05.123+02:00"`), "", ""},
		{"labels", with(`"labels":{"tenant":"t1","":"x"}`), "", ""},
		{"stream_output", with(`"stream_output":true`), "", ""},
		{"expect exact", wrap(`{"cmd":["x"],"expect_stdout":"","compare":"exact"}`), "", ""},
		{"expect lines", wrap(`{"cmd":["x"],"expect_stdout":"a","compare":"lines"}`), "", ""},
		{"expect tokens", wrap(`{"cmd":["x"],"expect_stdout":"a","compare":"tokens"}`), "", ""},
		{"continue", wrap(`{"cmd":["x"],"continue_on_failure":true}`), "", ""},
		{"limits max", wrap(`{"cmd":["x"],"limits":{"cpu_time_ms":600000,"wall_time_ms":3600000,"memory_bytes":8589934592,"pids":4096,"output_bytes":16777216,"file_size_bytes":1073741824,"open_files":4096,"disk_bytes":4294967296}}`), "", ""},
		{"limits zero", wrap(`{"cmd":["x"],"limits":{"cpu_time_ms":0}}`), "", ""},
		{"nulls", `{"id":null,"cmd":["x"],"files":null,"labels":null,"limits":null,"expires_at":null}`, "", ""},
		{"name", wrap(`{"name":"compile: gcc ✓","cmd":["x"]}`), "", ""},

		// The body.
		{"not json", `{`, "", "job is not valid JSON"},
		{"empty", ``, "", "job is not valid JSON"},
		{"trailing data", `{"cmd":["x"]} {}`, "", "job is not valid JSON"},
		{"duplicate key", `{"cmd":["x"],"cmd":["y"]}`, "cmd", "appears more than once"},
		{"duplicate step key", wrap(`{"cmd":["x"],"name":"a","name":"b"}`), "steps[0].name", "appears more than once"},
		{"duplicate env key", wrap(`{"cmd":["x"],"env":{"A":"1","A":"2"}}`), `steps[0].env["A"]`, "appears more than once"},
		{"duplicate label", with(`"labels":{"k":"1","k":"1"}`), `labels["k"]`, "appears more than once"},
		{"escaped key", `{"cmd":["x"]}`, "", ""},
		{"escaped duplicate", `{"cmd":["x"],"cmd":["y"]}`, "cmd", "appears more than once"},
		{"first error in document order", `{"zzz":1,"aaa":2}`, "zzz", "unknown field"},
		{"array", `[]`, "", "job must be a JSON object"},
		{"null", `null`, "", "job must be a JSON object"},
		{"string", `"x"`, "", "job must be a JSON object"},
		{"invalid utf-8", "{\"cmd\":[\"\xff\"]}", "", "not valid UTF-8"},

		// Unknown fields and wrong types.
		{"unknown top", with(`"foo":1`), "foo", "unknown field"},
		{"unknown case", `{"Cmd":["x"]}`, "Cmd", "unknown field"},
		{"unknown step", wrap(`{"cmd":["x"],"shell":true}`), "steps[0].shell", "unknown field"},
		{"unknown file", withFile(`{"path":"a","content":"","owner":"root"}`), "files[0].owner", "unknown field"},
		{"unknown limit", wrap(`{"cmd":["x"],"limits":{"cpu":1}}`), "steps[0].limits.cpu", "unknown field"},
		{"id number", `{"id":42,"cmd":["x"]}`, "id", "must be a string"},
		{"cmd string", wrap(`{"cmd":"ls -l"}`), "steps[0].cmd", "must be a list"},
		{"cmd number", wrap(`{"cmd":["ls",1]}`), "steps[0].cmd[1]", "must be a string"},
		{"steps object", `{"steps":{"cmd":["x"]}}`, "steps", "must be a list"},
		{"step not object", `{"steps":["ls"]}`, "steps[0]", "must be an object"},
		{"continue string", wrap(`{"cmd":["x"],"continue_on_failure":"yes"}`), "steps[0].continue_on_failure", "must be true or false"},
		{"stream_output string", with(`"stream_output":"true"`), "stream_output", "must be true or false"},
		{"limit float", wrap(`{"cmd":["x"],"limits":{"cpu_time_ms":1.5}}`), "steps[0].limits.cpu_time_ms", "must be an integer"},
		{"limit string", wrap(`{"cmd":["x"],"limits":{"pids":"1"}}`), "steps[0].limits.pids", "must be an integer"},
		{"limit huge", wrap(`{"cmd":["x"],"limits":{"pids":99999999999999999999}}`), "steps[0].limits.pids", "must be an integer"},
		{"labels number", with(`"labels":{"a":1}`), `labels["a"]`, "must be a string"},
		{"labels list", with(`"labels":["a"]`), "labels", "must be an object of strings"},
		{"env number", wrap(`{"cmd":["x"],"env":{"A":1}}`), `steps[0].env["A"]`, "must be a string"},

		// id and image.
		{"id dot", `{"id":"a.b","cmd":["x"]}`, "id", "must be 1 to 64"},
		{"id space", `{"id":"a b","cmd":["x"]}`, "id", "must be 1 to 64"},
		{"id 65", `{"id":"` + id64 + `a","cmd":["x"]}`, "id", "must be 1 to 64"},
		{"id unicode", `{"id":"ä","cmd":["x"]}`, "id", "must be 1 to 64"},
		{"id wildcard", `{"id":">","cmd":["x"]}`, "id", "must be 1 to 64"},
		{"image path", with(`"image":"../etc"`), "image", "not a valid image name"},
		{"image slash", with(`"image":"a/b"`), "image", "not a valid image name"},
		{"image dash", with(`"image":"-x"`), "image", "not a valid image name"},

		// Steps.
		{"no steps", `{"id":"x"}`, "steps", "must have 1 to 16 steps"},
		{"empty steps", `{"steps":[]}`, "steps", "must have 1 to 16 steps"},
		{"17 steps", steps(17), "steps", "more than the maximum 16"},
		{"cmd missing", wrap(`{"name":"a"}`), "steps[0].cmd", "must not be empty"},
		{"cmd empty", wrap(`{"cmd":[]}`), "steps[0].cmd", "must not be empty"},
		{"cmd null", wrap(`{"cmd":null}`), "steps[0].cmd", "must not be empty"},
		{"cmd[0] empty", wrap(`{"cmd":[""]}`), "steps[0].cmd[0]", "must not be empty"},
		{"cmd NUL", wrap(`{"cmd":["a","b\u0000c"]}`), "steps[0].cmd[1]", "NUL"},
		{"second step", `{"steps":[{"cmd":["x"]},{"cmd":[]}]}`, "steps[1].cmd", "must not be empty"},
		{"name newline", wrap(`{"name":"a\nb","cmd":["x"]}`), "steps[0].name", "control characters"},
		{"name long", wrap(`{"name":"` + strings.Repeat("n", 129) + `","cmd":["x"]}`), "steps[0].name", "longer than 128"},
		{"env empty key", wrap(`{"cmd":["x"],"env":{"":"x"}}`), "steps[0].env", "must not be empty"},
		{"env key =", wrap(`{"cmd":["x"],"env":{"A=B":"x"}}`), `steps[0].env["A=B"]`, "must not contain '='"},
		{"env key NUL", wrap(`{"cmd":["x"],"env":{"A\u0000":"x"}}`), `steps[0].env["A\x00"]`, "NUL"},
		{"env value NUL", wrap(`{"cmd":["x"],"env":{"A":"x\u0000"}}`), `steps[0].env["A"]`, "NUL"},
		{"cwd relative", wrap(`{"cmd":["x"],"cwd":"work"}`), "steps[0].cwd", "must be an absolute path"},
		{"cwd dotdot", wrap(`{"cmd":["x"],"cwd":"/work/../etc"}`), "steps[0].cwd", `".." element`},
		{"cwd trailing slash, cleaned", wrap(`{"cmd":["x"],"cwd":"/work/"}`), "", ""},
		{"cwd double slash, cleaned", wrap(`{"cmd":["x"],"cwd":"//work"}`), "", ""},
		{"cwd empty", wrap(`{"cmd":["x"],"cwd":""}`), "steps[0].cwd", "must not be empty"},
		{"cwd NUL", wrap(`{"cmd":["x"],"cwd":"/a\u0000"}`), "steps[0].cwd", "NUL"},
		{"stdin both", wrap(`{"cmd":["x"],"stdin":"a","stdin_b64":"YQ=="}`), "steps[0].stdin_b64", "together with stdin"},
		{"stdin_b64 bad", wrap(`{"cmd":["x"],"stdin_b64":"not base64!"}`), "steps[0].stdin_b64", "not valid base64"},
		{"stdin_b64 unpadded", wrap(`{"cmd":["x"],"stdin_b64":"YQ"}`), "steps[0].stdin_b64", "not valid base64"},
		{"compare bad", wrap(`{"cmd":["x"],"compare":"fuzzy"}`), "steps[0].compare", `must be "exact", "lines" or "tokens"`},
		{"limit negative", wrap(`{"cmd":["x"],"limits":{"pids":-1}}`), "steps[0].limits.pids", "-1 must not be negative"},
		{"limit above", wrap(`{"cmd":["x"],"limits":{"memory_bytes":9000000000}}`), "steps[0].limits.memory_bytes", "9000000000 is above the maximum 8589934592"},
		{"limit above second", `{"steps":[{"cmd":["x"]},{"cmd":["x"],"limits":{"wall_time_ms":3600001}}]}`, "steps[1].limits.wall_time_ms", "above the maximum 3600000"},

		// Shorthand.
		{"mixed cmd", `{"cmd":["x"],"steps":[{"cmd":["y"]}]}`, "cmd", "cannot be mixed with steps"},
		{"mixed limits", `{"limits":{},"steps":[{"cmd":["y"]}]}`, "limits", "cannot be mixed with steps"},
		{"mixed expect", `{"expect_stdout":"","steps":[{"cmd":["y"]}]}`, "expect_stdout", "cannot be mixed with steps"},
		{"mixed empty steps", `{"cmd":["x"],"steps":[]}`, "cmd", "cannot be mixed with steps"},
		{"shorthand without cmd", `{"env":{"A":"1"}}`, "cmd", "must not be empty"},
		{"shorthand empty cmd", `{"cmd":[]}`, "cmd", "must not be empty"},
		{"shorthand cwd", `{"cmd":["x"],"cwd":"rel"}`, "cwd", "must be an absolute path"},
		{"shorthand compare", `{"cmd":["x"],"compare":"fuzzy"}`, "compare", "must be"},
		{"shorthand limits", `{"cmd":["x"],"limits":{"memory_bytes":9000000000}}`, "limits.memory_bytes", "above the maximum"},
		{"shorthand stdin both", `{"cmd":["x"],"stdin":"a","stdin_b64":"YQ=="}`, "stdin_b64", "together with stdin"},

		// Files.
		{"file no path", withFile(`{"content":"x"}`), "files[0].path", "must not be empty"},
		{"file absolute", withFile(`{"path":"/etc/passwd","content":"x"}`), "files[0].path", "must be relative"},
		{"file dotdot", withFile(`{"path":"../x","content":"x"}`), "files[0].path", `".." element`},
		{"file inner dotdot", withFile(`{"path":"a/../b","content":"x"}`), "files[0].path", `".." element`},
		{"file trailing dotdot", withFile(`{"path":"a/..","content":"x"}`), "files[0].path", `".." element`},
		{"file dot", withFile(`{"path":".","content":"x"}`), "files[0].path", "not the directory itself"},
		{"file unclean, cleaned", withFile(`{"path":"a/./b","content":"x"}`), "", ""},
		{"file leading dot, cleaned", withFile(`{"path":"./a","content":"x"}`), "", ""},
		{"file slash, cleaned", withFile(`{"path":"a/","content":"x"}`), "", ""},
		{"file double slash, cleaned", withFile(`{"path":"a//b","content":"x"}`), "", ""},
		{"file only dot", withFile(`{"path":"./","content":"x"}`), "files[0].path", "not the directory itself"},
		{"file NUL", withFile(`{"path":"a\u0000","content":"x"}`), "files[0].path", "NUL"},
		{"file long element", withFile(`{"path":"` + strings.Repeat("x", 256) + `","content":"x"}`), "files[0].path", "longer than 255"},
		{"file no content", withFile(`{"path":"a"}`), "files[0]", "exactly one of content, content_b64 and object, has 0"},
		{"file null content", withFile(`{"path":"a","content":null}`), "files[0]", "has 0"},
		{"file two contents", withFile(`{"path":"a","content":"","content_b64":""}`), "files[0]", "has 2"},
		{"file three", withFile(`{"path":"a","content":"","content_b64":"","object":"b/c"}`), "files[0]", "has 3"},
		{"second file", withFile(`{"path":"a","content":""},{"path":"/b","content":""}`), "files[1].path", "must be relative"},
		{"file b64 bad", withFile(`{"path":"a","content_b64":"%%%"}`), "files[0].content_b64", "not valid base64"},
		{"object no slash", withFile(`{"path":"a","object":"name"}`), "files[0].object", `"bucket/name"`},
		{"object bad bucket", withFile(`{"path":"a","object":"a.b/c"}`), "files[0].object", "bucket"},
		{"object empty bucket", withFile(`{"path":"a","object":"/c"}`), "files[0].object", "bucket"},
		{"object empty name", withFile(`{"path":"a","object":"b/"}`), "files[0].object", "must not be empty"},
		{"mode above", withFile(`{"path":"a","content":"","mode":4096}`), "files[0].mode", "010000 is above 07777"},
		{"mode string above", withFile(`{"path":"a","content":"","mode":"17777"}`), "files[0].mode", "above 07777"},
		{"mode negative", withFile(`{"path":"a","content":"","mode":-1}`), "files[0].mode", "octal digits"},
		{"mode float", withFile(`{"path":"a","content":"","mode":4.5}`), "files[0].mode", "octal digits"},
		{"mode exponent", withFile(`{"path":"a","content":"","mode":4e2}`), "", ""},
		{"mode fraction", withFile(`{"path":"a","content":"","mode":420.5}`), "files[0].mode", "octal digits"},
		{"mode 0o", withFile(`{"path":"a","content":"","mode":"0o755"}`), "files[0].mode", "octal digits"},
		{"mode 9", withFile(`{"path":"a","content":"","mode":"0789"}`), "files[0].mode", "octal digits"},
		{"mode empty", withFile(`{"path":"a","content":"","mode":""}`), "files[0].mode", "octal digits"},
		{"mode sign", withFile(`{"path":"a","content":"","mode":"+755"}`), "files[0].mode", "octal digits"},
		{"mode space", withFile(`{"path":"a","content":"","mode":" 755"}`), "files[0].mode", "octal digits"},
		{"mode bool", withFile(`{"path":"a","content":"","mode":true}`), "files[0].mode", "octal digits"},
		{"mode huge", withFile(`{"path":"a","content":"","mode":99999999999}`), "files[0].mode", "octal digits"},

		// Collect.
		{"collect absolute", with(`"collect":["/etc/*"]`), "collect[0]", "must be relative"},
		{"collect dotdot", with(`"collect":["ok","../*"]`), "collect[1]", `".." element`},
		{"collect inner dotdot", with(`"collect":["a/../../b"]`), "collect[0]", `".." element`},
		{"collect empty", with(`"collect":[""]`), "collect[0]", "must not be empty"},
		{"collect bad glob", with(`"collect":["a["]`), "collect[0]", "not a valid glob"},
		{"collect bad glob escape", with(`"collect":["a\\"]`), "collect[0]", "not a valid glob"},
		{"collect number", with(`"collect":[1]`), "collect[0]", "must be a string"},

		// Network, seccomp.
		{"network host", with(`"network":"host"`), "network", `must be "none" or "egress"`},
		{"egress allow without egress", with(`"egress_allow":["10.0.0.0/8"]`), "egress_allow", "needs network"},
		{"egress allow bad cidr", with(`"network":"egress","egress_allow":["nope"]`), "egress_allow[0]", "want a CIDR"},
		{"egress allow bad port", with(`"network":"egress","egress_allow":["203.0.113.0/24:70000"]`), "egress_allow[0]", "port must be"},
		{"network bool", with(`"network":false`), "network", "must be a string"},
		{"seccomp off", with(`"seccomp":"unconfined"`), "seccomp", `must be "default" or "strict"`},

		// reply_to.
		{"reply jobs", with(`"reply_to":"corral.jobs.default"`), "reply_to", `must not be under "corral.jobs."`},
		{"reply jobs bare", with(`"reply_to":"corral.jobs"`), "reply_to", "must not be under"},
		{"reply cancel", with(`"reply_to":"corral.cancel.x"`), "reply_to", "must not be under"},
		{"reply dead", with(`"reply_to":"corral.dead.default"`), "reply_to", "must not be under"},
		{"reply JS", with(`"reply_to":"$JS.API.STREAM.DELETE.CORRAL_JOBS"`), "reply_to", `"$JS."`},
		{"reply KV", with(`"reply_to":"$KV.b.k"`), "reply_to", "must not be under"},
		{"reply O", with(`"reply_to":"$O.b.C.x"`), "reply_to", "must not be under"},
		{"reply SYS", with(`"reply_to":"$SYS.REQ.SERVER.PING"`), "reply_to", "must not be under"},
		{"reply empty token", with(`"reply_to":"a..b"`), "reply_to", "empty token"},
		{"reply leading dot", with(`"reply_to":".a"`), "reply_to", "empty token"},
		{"reply trailing dot", with(`"reply_to":"a."`), "reply_to", "empty token"},
		{"reply star", with(`"reply_to":"a.*"`), "reply_to", "wildcard"},
		{"reply gt", with(`"reply_to":"a.>"`), "reply_to", "wildcard"},
		{"reply too long", with(`"reply_to":"` + strings.Repeat("x", 513) + `"`), "reply_to", "more than 512"},
		{"reply too many tokens", with(`"reply_to":"` + strings.Repeat("t.", 32) + `t"`), "reply_to", "more than 32 tokens"},
		{"reply 512 bytes", with(`"reply_to":"` + strings.Repeat("x", 512) + `"`), "", ""},
		{"cmd too long", `{"cmd":["x"` + strings.Repeat(`,""`, 65536) + `]}`, "cmd", "at most 65536"},
		{"collect too many", with(`"collect":[` + strings.Repeat(`"a",`, 64) + `"a"]`), "collect", "at most 64"},
		{"labels too many", with(`"labels":{` + manyLabels(65) + `}`), "labels", "at most 64"},
		{"labels too big", with(`"labels":{"k":"` + strings.Repeat("v", 16384) + `"}`), "labels", "at most 16384"},
		{"reply space", with(`"reply_to":"a b"`), "reply_to", "white space"},
		{"reply tab", with(`"reply_to":"a\tb"`), "reply_to", "white space"},
		{"reply newline", with(`"reply_to":"a\r\nPUB x"`), "reply_to", "white space"},

		// expires_at.
		{"expires words", with(`"expires_at":"tomorrow"`), "expires_at", "RFC 3339"},
		{"expires date", with(`"expires_at":"2026-01-02"`), "expires_at", "RFC 3339"},
		{"expires no zone", with(`"expires_at":"2026-01-02T15:04:05"`), "expires_at", "RFC 3339"},
		{"expires number", with(`"expires_at":1767366245`), "expires_at", "RFC 3339"},
	}
}

func TestDecodeValidate(t *testing.T) {
	for _, tt := range decodeCases() {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeValidate(tt.json)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("got %v, want a valid job", err)
				}
				return
			}
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("got %v (%T), want a *RejectError", err, err)
			}
			if !errors.Is(err, ErrRejected) {
				t.Errorf("errors.Is(%v, ErrRejected) = false", err)
			}
			if rej.Field != tt.field || !strings.Contains(rej.Reason, tt.reason) {
				t.Errorf("got field %q reason %q, want field %q reason containing %q", rej.Field, rej.Reason, tt.field, tt.reason)
			}
		})
	}
}

func TestRejectErrorMessages(t *testing.T) {
	tests := []struct{ json, want string }{
		{wrap(`{"cmd":[]}`), "steps[0].cmd: must not be empty"},
		{`{"cmd":["x"],"limits":{"memory_bytes":9000000000}}`, "limits.memory_bytes: 9000000000 is above the maximum 8589934592"},
		{wrap(`{"cmd":["x"],"limits":{"memory_bytes":9000000000}}`), "steps[0].limits.memory_bytes: 9000000000 is above the maximum 8589934592"},
		{`{"id":"a.b","cmd":["x"]}`, `id: "a.b" must be 1 to 64 of A-Z, a-z, 0-9, '_' and '-'`},
		{withFile(`{"path":"../x","content":""}`), `files[0].path: unsafe path "../x": must not contain a ".." element`},
		{`[1]`, "job must be a JSON object"},
	}
	for _, tt := range tests {
		_, err := decodeValidate(tt.json)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s:\ngot  %v\nwant %s", tt.json, err, tt.want)
		}
	}
}

func TestRejectErrorQuotesLongValues(t *testing.T) {
	_, err := decodeValidate(`{"id":"` + strings.Repeat("é", 100) + `","cmd":["x"]}`)
	if err == nil {
		t.Fatal("no error")
	}
	if len(err.Error()) > 200 || !strings.Contains(err.Error(), `..."`) && !strings.Contains(err.Error(), `"...`) {
		t.Errorf("long value not cut: %s", err)
	}
}

func TestValidateWithQueueMaxima(t *testing.T) {
	j, err := Decode([]byte(wrap(`{"cmd":["x"],"limits":{"cpu_time_ms":5000,"pids":10}}`)))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Validate(Limits{CPUTimeMs: 5000}); err != nil {
		t.Errorf("at the queue maximum: %v", err)
	}
	err = j.Validate(Limits{CPUTimeMs: 4999})
	if err == nil || err.Error() != "steps[0].limits.cpu_time_ms: 5000 is above the maximum 4999" {
		t.Errorf("above the queue maximum: %v", err)
	}
	if err := j.Validate(Limits{Pids: 9}); err == nil {
		t.Error("pids above the queue maximum passed")
	}
	// A zero maximum is the protocol maximum, never "unlimited".
	j.Steps[0].Limits.MemoryBytes = 9 << 30
	if err := j.Validate(Limits{}); err == nil {
		t.Error("memory above the protocol maximum passed with zero maxima")
	}
}

func TestValidateGoJobs(t *testing.T) {
	// A job built in Go and never normalised validates like a decoded one.
	j := &Job{Cmd: []string{"true"}, Cwd: "rel"}
	err := j.Validate(MaxLimits())
	if err == nil || err.Error() != `cwd: "rel" must be an absolute path` {
		t.Errorf("got %v", err)
	}
	j = &Job{Cmd: []string{"true"}, Steps: []Step{{Cmd: []string{"x"}}}}
	if err := j.Validate(MaxLimits()); err == nil || !strings.HasPrefix(err.Error(), "cmd: ") {
		t.Errorf("mixed: got %v", err)
	}
	j = &Job{Files: []File{{Path: "a", Content: "x", Object: "b/c"}}, Steps: []Step{{Cmd: []string{"x"}}}}
	if err := j.Validate(MaxLimits()); err == nil || err.Error() != "files[0]: has more than one of content, content_b64 and object" {
		t.Errorf("two contents: got %v", err)
	}
	// Without presence information, an empty File is an empty file.
	j = &Job{Files: []File{{Path: "a"}}, Steps: []Step{{Cmd: []string{"x"}}}}
	if err := j.Validate(MaxLimits()); err != nil {
		t.Errorf("empty file: %v", err)
	}
	j = &Job{Steps: []Step{{Cmd: []string{"x"}}}, Files: []File{{Path: "a", Mode: 0o10000}}}
	if err := j.Validate(MaxLimits()); err == nil || err.Error() != "files[0].mode: 010000 is above 07777" {
		t.Errorf("mode: got %v", err)
	}
}

func TestValidID(t *testing.T) {
	good := []string{"a", "A", "0", "_", "-", "sub-42", "job_1-X", strings.Repeat("z", 64)}
	bad := []string{"", "a.b", "a b", "a*", "a>", "ä", "a/b", "a\x00", strings.Repeat("z", 65), "$JS"}
	for _, s := range good {
		if !ValidID(s) || !ValidQueue(s) {
			t.Errorf("ValidID(%q) = false", s)
		}
	}
	for _, s := range bad {
		if ValidID(s) || ValidQueue(s) {
			t.Errorf("ValidID(%q) = true", s)
		}
	}
}

func TestReplySubjectAllowed(t *testing.T) {
	tests := []struct {
		subject  string
		prefixes []string
		ok       bool
	}{
		{"corral.results.x", nil, true},
		{"corral.results.x", []string{"corral.results."}, true},
		{"corral.results.x", []string{"corral.results"}, true},
		{"corral.results", []string{"corral.results"}, true},
		{"corral.resultsx", []string{"corral.results"}, false},
		{"corral.resultsx.a", []string{"corral.results."}, false},
		{"my.inbox.1", []string{"corral.results.", "my.inbox."}, true},
		{"other.x", []string{"corral.results.", "my.inbox."}, false},
		{"x", []string{""}, false},
		{"corral.jobs.q", []string{"corral."}, false},
		{"$SYS.x", []string{"$SYS."}, false},
		{"$JS", nil, false},
		{"$JSX.a", nil, true},
		{"corral.dead", nil, false},
		{"", nil, false},
		{"a.*.b", nil, false},
		{"a\x00b", nil, false},
		{"a\u00a0b", nil, false},
	}
	for _, tt := range tests {
		err := ReplySubjectAllowed(tt.subject, tt.prefixes)
		if (err == nil) != tt.ok {
			t.Errorf("ReplySubjectAllowed(%q, %q) = %v, want ok %v", tt.subject, tt.prefixes, err, tt.ok)
		}
		var rej *RejectError
		if err != nil && (!errors.As(err, &rej) || rej.Field != "reply_to") {
			t.Errorf("ReplySubjectAllowed(%q): error %v is not a reply_to *RejectError", tt.subject, err)
		}
	}
}

func TestSplitObject(t *testing.T) {
	tests := []struct{ ref, bucket, name string }{
		{"corral-files/abc", "corral-files", "abc"},
		{"b/dir/x.bin", "b", "dir/x.bin"},
		{"b", "", ""},
		{"/x", "", ""},
		{"b/", "", ""},
		{"b.c/x", "", ""},
	}
	for _, tt := range tests {
		b, n, err := SplitObject(tt.ref)
		if b != tt.bucket || n != tt.name || (err == nil) != (tt.bucket != "") {
			t.Errorf("SplitObject(%q) = %q, %q, %v", tt.ref, b, n, err)
		}
	}
}

func TestValidImageName(t *testing.T) {
	for _, s := range []string{"python", "python:3.12", "sha256:ab12", "gcc_13.2", "img@v1", "c++"} {
		if !ValidImageName(s) {
			t.Errorf("ValidImageName(%q) = false", s)
		}
	}
	for _, s := range []string{"", ".", "..", ".hidden", "-x", "a/b", "a b", strings.Repeat("i", 129)} {
		if ValidImageName(s) {
			t.Errorf("ValidImageName(%q) = true", s)
		}
	}
}

func TestSafeRelPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a", "a"},
		{"a/b", "a/b"},
		{"a/./b", "a/b"},
		{"./a", "a"},
		{"a//b/", "a/b"},
		{"..a", "..a"},
		{"a..", "a.."},
		{"...", "..."},
		{"a\\..\\b", "a\\..\\b"}, // a backslash is an ordinary byte on Linux
		{"*.txt", "*.txt"},
		{"", ""},
		{".", ""},
		{"./", ""},
		{"/", ""},
		{"/a", ""},
		{"..", ""},
		{"../a", ""},
		{"a/..", ""},
		{"a/../b", ""},
		{"a/b/../../..", ""},
		{"a\x00b", ""},
		{strings.Repeat("n", 256), ""},
		{strings.Repeat("n/", 2048), ""},
	}
	for _, tt := range tests {
		got, err := SafeRelPath(tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("SafeRelPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if err != nil && !errors.Is(err, ErrUnsafePath) {
			t.Errorf("SafeRelPath(%q): %v does not match ErrUnsafePath", tt.in, err)
		}
	}
}

func ExampleRejectError() {
	_, err := Decode([]byte(`{"steps":[{"cmd":["ls"]}],"cmd":["ls"]}`))
	var rej *RejectError
	if errors.As(err, &rej) {
		fmt.Println(rej.Status(), "-", rej.Field, "-", rej.Reason)
	}
	// Output: rejected - cmd - the single-step shorthand cannot be mixed with steps
}

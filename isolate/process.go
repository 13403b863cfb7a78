package isolate

import "github.com/corralhq/corral/jobs"

// Process is one command to run in a sandbox.
type Process struct {
	// Argv is the command; Argv[0] is looked up in the PATH of Env inside
	// the sandbox when it has no slash. Required.
	Argv []string
	// Env is the complete environment, KEY=VALUE.
	Env []string
	// Cwd is the working directory inside the sandbox. Default "/work".
	Cwd string
	// Stdin is the standard input. Default: empty.
	Stdin []byte
	// Limits apply to this process; zero fields take the protocol's
	// defaults. DiskBytes is ignored here: the writable layer is sized at
	// New and Reset.
	Limits jobs.Limits
	// Seccomp is the system call profile installed just before exec.
	// Default: SeccompDefault. There is no way to run without one.
	Seccomp SeccompProfile
	// Output, if set, receives output as it arrives (stream is "stdout"
	// or "stderr"), up to the output cap. It must not keep p.
	Output func(stream string, p []byte)
	// More says another process runs in this sandbox before its next
	// Reset: the sandbox then prepares that one's process (all of its setup
	// that does not depend on the request) while this one's result goes
	// out. After New and Reset a process is always prepared.
	More bool
	// Last says nothing follows in this sandbox before its next Reset
	// (no process, no file written or collected): the init then starts
	// the reset (to Config.DiskBytes) as soon as this process is done, while
	// the caller reads its result, and Reset only waits for it. Run, Collect
	// and WriteFiles fail until that Reset. Last and More exclude each other.
	Last bool
}

// DefaultEnv is the environment a job starts from.
var DefaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/work",
	"LANG=C.UTF-8",
}

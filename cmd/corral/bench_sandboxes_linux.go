package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/corralhq/corral/isolate"
	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/rootfs"
)

// sandboxFloorSlot is the first uid range of the sandboxes sandboxFloor
// makes: far above any worker slot of this process.
const sandboxFloorSlot = 1000

// sandboxFloor runs /bin/true runs times in threads warm sandboxes of image
// at once, each run preparing the next process as a worker's slot does
// (Process.More), through isolate directly: every layer of the sandbox on,
// and no queue. It is the sandboxes' own ceiling on this machine, to set
// beside the floor and the jobs.
func sandboxFloor(ctx context.Context, data, image string, threads, runs int) (floorRun, error) {
	threads = max(1, min(threads, runs))
	store, err := rootfs.OpenStore(data)
	if err != nil {
		return floorRun{}, err
	}
	img, err := store.Get(image)
	if err != nil {
		return floorRun{}, err
	}
	// Beside the embedded worker's run directory, inside it: the stale
	// cleanup of a later start takes both.
	m, err := rootfs.NewMounter(filepath.Join(data, "run", strconv.Itoa(os.Getpid()), "sandbox-floor"))
	if err != nil {
		return floorRun{}, err
	}
	defer m.Close()
	lower, release, err := m.Acquire(img)
	if err != nil {
		return floorRun{}, err
	}
	defer release()
	sbs := make([]*isolate.Sandbox, threads)
	defer func() {
		for _, sb := range sbs {
			if sb != nil {
				sb.Close()
			}
		}
	}()
	p := isolate.Process{Argv: []string{"/bin/true"}, Env: isolate.DefaultEnv, More: true}
	for i := range sbs {
		sbs[i], err = isolate.New(ctx, isolate.Config{
			Lower: lower, RunDir: m.Dir(),
			HostUID:      isolate.DefaultUIDBase + uint32(sandboxFloorSlot+i)*isolate.IDsPerSandbox,
			CgroupParent: isolate.OwnerCgroupParent("", os.Getpid()),
		})
		if err != nil {
			return floorRun{}, err
		}
		// Warm: the first run prepares the process the loop starts with.
		if r, err := sbs[i].Run(ctx, p); err != nil || r.Status != jobs.StatusOK {
			return floorRun{}, fmt.Errorf("sandbox floor: /bin/true: %v %v", err, r)
		}
	}
	fr, err := timedRuns(threads, runs, func(i int) error {
		r, err := sbs[i].Run(ctx, p)
		if err == nil && r.Status != jobs.StatusOK {
			err = fmt.Errorf("status %s", r.Status)
		}
		return err
	})
	if err != nil {
		return floorRun{}, fmt.Errorf("sandbox floor: %w", err)
	}
	return fr, nil
}

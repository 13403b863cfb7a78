package main

/*
#cgo LDFLAGS: -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
	int64_t *lat;
	int n;
	int err;
} corral_floor_arg;

static int64_t corral_floor_now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// One thread: n times vfork + execve("/bin/true") + waitpid, each timed.
static void *corral_floor_thread(void *p) {
	corral_floor_arg *a = p;
	// Keep the Go runtime's signals off this thread (and out of the
	// vforked child, which shares its memory until it execs).
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	char *argv[] = {"true", NULL};
	char *envp[] = {NULL};
	for (int i = 0; i < a->n; i++) {
		int64_t t0 = corral_floor_now();
		pid_t pid = vfork();
		if (pid == 0) {
			execve("/bin/true", argv, envp);
			_exit(127);
		}
		if (pid < 0) {
			a->err = errno;
			return NULL;
		}
		int st;
		while (waitpid(pid, &st, 0) < 0) {
			if (errno != EINTR) {
				a->err = errno;
				return NULL;
			}
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			a->err = -1;
			return NULL;
		}
		a->lat[i] = corral_floor_now() - t0;
	}
	return NULL;
}

// corral_floor runs `runs` vfork+exec+wait of /bin/true spread over
// `threads` pthreads, stores each run's latency (ns) in lat and the total
// elapsed time in *elapsed. Returns 0, an errno, or -1 if /bin/true failed.
static int corral_floor(int threads, int runs, int64_t *lat, int64_t *elapsed) {
	if (threads < 1) threads = 1;
	if (threads > runs) threads = runs;
	pthread_t *tids = calloc(threads, sizeof(pthread_t));
	corral_floor_arg *args = calloc(threads, sizeof(corral_floor_arg));
	if (!tids || !args) {
		free(tids);
		free(args);
		return ENOMEM;
	}
	int off = 0, started = 0, rc = 0;
	int64_t t0 = corral_floor_now();
	for (int i = 0; i < threads; i++) {
		int n = runs / threads + (i < runs % threads ? 1 : 0);
		args[i].lat = lat + off;
		args[i].n = n;
		off += n;
		rc = pthread_create(&tids[i], NULL, corral_floor_thread, &args[i]);
		if (rc != 0) break;
		started++;
	}
	for (int i = 0; i < started; i++) pthread_join(tids[i], NULL);
	*elapsed = corral_floor_now() - t0;
	for (int i = 0; i < started && rc == 0; i++) rc = args[i].err;
	free(tids);
	free(args);
	return rc;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// floorRun is the outcome of one floor loop: per-run latencies and the
// elapsed time of the whole loop.
type floorRun struct {
	lat     []time.Duration
	elapsed time.Duration
}

// vforkFloor runs runs × (vfork + execve /bin/true + waitpid) in threads
// parallel pthreads, in C, timing each run with clock_gettime.
func vforkFloor(threads, runs int) (floorRun, error) {
	if runs <= 0 {
		return floorRun{}, nil
	}
	buf := make([]C.int64_t, runs)
	var elapsed C.int64_t
	rc := C.corral_floor(C.int(threads), C.int(runs), (*C.int64_t)(unsafe.Pointer(&buf[0])), &elapsed)
	switch {
	case rc == -1:
		return floorRun{}, fmt.Errorf("floor: /bin/true did not exit 0")
	case rc != 0:
		return floorRun{}, fmt.Errorf("floor: %w", syscall.Errno(rc))
	}
	fr := floorRun{lat: make([]time.Duration, runs), elapsed: time.Duration(elapsed)}
	for i, v := range buf {
		fr.lat[i] = time.Duration(v)
	}
	return fr, nil
}

// goExecFloor is the same loop with os/exec, for reference.
func goExecFloor(threads, runs int) (floorRun, error) {
	if runs <= 0 {
		return floorRun{}, nil
	}
	fr, err := timedRuns(max(1, min(threads, runs)), runs, func(int) error {
		return exec.Command("/bin/true").Run()
	})
	if err != nil {
		return floorRun{}, fmt.Errorf("go exec floor: %w", err)
	}
	return fr, nil
}

// timedRuns calls run runs times from threads goroutines (run gets the
// goroutine's number), timing each call and the whole; the first error
// of each goroutine stops it.
func timedRuns(threads, runs int, run func(thread int) error) (floorRun, error) {
	fr := floorRun{lat: make([]time.Duration, runs)}
	var wg sync.WaitGroup
	errs := make([]error, threads)
	off := 0
	start := time.Now()
	for i := 0; i < threads; i++ {
		n := runs / threads
		if i < runs%threads {
			n++
		}
		part := fr.lat[off : off+n]
		off += n
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range part {
				t0 := time.Now()
				if err := run(i); err != nil {
					errs[i] = err
					return
				}
				part[j] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	fr.elapsed = time.Since(start)
	return fr, errors.Join(errs...)
}

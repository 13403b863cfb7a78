package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/corralhq/corral/jobs"
	"github.com/corralhq/corral/natstest"
	"github.com/corralhq/corral/worker"
)

// `corral dead ls` lists CORRAL_DEAD; `replay` puts jobs back on their
// queues with their ids, refusing those too young for their result to be
// stored, and removes the copies.
func TestDeadLsReplay(t *testing.T) {
	url, _ := natstest.Server(t)
	_, js := natstest.Connect(t, url)
	ctx := context.Background()
	if _, err := worker.EnsureStreams(ctx, js, worker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, _, code := corral(t, "dead", "ls", "--nats", url); code != 0 {
		t.Fatal("ls of an empty stream failed")
	}
	// As workers keep them: the body unchanged, why, how many deliveries,
	// the id (absent from copies by workers before Corral-Job-Id).
	put := func(queue, id, body string) {
		m := nats.NewMsg(jobs.DeadSubject(queue))
		m.Data = []byte(body)
		m.Header.Set(jobs.HeaderError, "the job was delivered 3 times and no worker finished it")
		m.Header.Set(jobs.HeaderAttempts, "3")
		if id != "" {
			m.Header.Set(jobs.HeaderJobID, id)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	put("default", "d1", `{"id": "d1", "cmd": ["true"]}`)
	put("judge", "hdr-2", `{"cmd": ["true"]}`)           // its id came from Nats-Msg-Id
	put("default", "", `{"id": "d3", "cmd": ["false"]}`) // an older worker's copy

	out, stderr, code := corral(t, "dead", "ls", "--nats", url, "--json")
	if code != 0 {
		t.Fatalf("ls: %s", stderr)
	}
	var listed []deadJob
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var d deadJob
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		listed = append(listed, d)
	}
	if len(listed) != 3 || listed[0].ID != "d1" || listed[1].ID != "hdr-2" || listed[1].Queue != "judge" || listed[2].ID != "d3" ||
		listed[0].Attempts != 3 || !strings.Contains(listed[0].Error, "delivered 3 times") || listed[0].Seq != 1 {
		t.Fatalf("%+v", listed)
	}
	out, _, _ = corral(t, "dead", "ls", "--nats", url, "--queue", "judge")
	if !strings.Contains(out, "hdr-2") || strings.Contains(out, "d1") || !strings.HasPrefix(out, "SEQ") {
		t.Fatalf("ls --queue judge:\n%s", out)
	}

	// Too young: refused, nothing published, the copy kept.
	if _, stderr, code := corral(t, "dead", "replay", "--nats", url, "1"); code != 1 || !strings.Contains(stderr, "duplicate window") {
		t.Fatalf("young replay: exit %d: %s", code, stderr)
	}
	if _, stderr, code := corral(t, "dead", "replay", "--nats", url); code == 0 || !strings.Contains(stderr, "--all") {
		t.Fatalf("replay of nothing: exit %d: %s", code, stderr)
	}
	jobsStream, err := js.Stream(ctx, jobs.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := jobsStream.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("%d jobs published by a refused replay", info.State.Msgs)
	}

	// --force, --keep, then again: the second is a duplicate.
	if out, stderr, code := corral(t, "dead", "replay", "--nats", url, "--force", "--keep", "1"); code != 0 || !strings.Contains(out, "replayed 1: job d1 to queue default") {
		t.Fatalf("replay: exit %d: %s %s", code, out, stderr)
	}
	if _, stderr, code := corral(t, "dead", "replay", "--nats", url, "--force", "--keep", "1"); code != 1 || !strings.Contains(stderr, "duplicate") {
		t.Fatalf("second replay: exit %d: %s", code, stderr)
	}
	m, err := jobsStream.GetLastMsgForSubject(ctx, jobs.JobSubject("default"))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != `{"id": "d1", "cmd": ["true"]}` || m.Header.Get(jobs.HeaderMsgID) != "d1" {
		t.Fatalf("replayed job: %v %s", m.Header, m.Data)
	}

	// --all --queue judge: the job keeps the id it had, its copy goes.
	if out, stderr, code := corral(t, "dead", "replay", "--nats", url, "--force", "--all", "--queue", "judge"); code != 0 || !strings.Contains(out, "job hdr-2 to queue judge") {
		t.Fatalf("replay --all: exit %d: %s %s", code, out, stderr)
	}
	m, err = jobsStream.GetLastMsgForSubject(ctx, jobs.JobSubject("judge"))
	if err != nil || m.Header.Get(jobs.HeaderMsgID) != "hdr-2" {
		t.Fatalf("replayed judge job: %v %v", m, err)
	}
	deadStream, err := js.Stream(ctx, jobs.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deadStream.GetMsg(ctx, 2); err == nil {
		t.Fatal("the replayed copy is still in CORRAL_DEAD")
	}
	if _, err := deadStream.GetMsg(ctx, 1); err != nil {
		t.Fatalf("the --keep copy is gone: %v", err)
	}
	// The older worker's copy: its id from the body.
	if out, _, code := corral(t, "dead", "replay", "--nats", url, "--force", strconv.Itoa(3)); code != 0 || !strings.Contains(out, "job d3") {
		t.Fatalf("replay 3: %s", out)
	}
	if _, _, code := corral(t, "dead", "replay", "--nats", url, "--force", "3"); code != 1 {
		t.Fatal("a replay of a removed copy succeeded")
	}
	if _, stderr, code := corral(t, "dead", "replay", "--nats", url, "x"); code == 0 || !strings.Contains(stderr, "not a sequence number") {
		t.Fatalf("bad seq: %d %s", code, stderr)
	}
}

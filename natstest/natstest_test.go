package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/natstest"
)

func TestServerJetStream(t *testing.T) {
	url, srv := natstest.Server(t)
	if url == "" || srv == nil {
		t.Fatalf("Server returned url %q, server %v", url, srv)
	}
	nc, js := natstest.Connect(t, url)
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	ack, err := js.Publish(ctx, "t.1", []byte("x"))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if ack.Stream != "T" || ack.Sequence != 1 {
		t.Fatalf("PubAck = %+v, want stream T seq 1", ack)
	}
}

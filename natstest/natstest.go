// Package natstest starts a real NATS server with JetStream inside a test and
// connects to it. Tests of code that talks to NATS use it instead of mocks:
//
//	url, _ := natstest.Server(t)
//	nc, js := natstest.Connect(t, url)
//
// Everything is torn down by t.Cleanup: connections close before the server
// shuts down, and the server's store directory is removed last.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyTimeout is how long Server waits for the server to accept connections.
const readyTimeout = 10 * time.Second

// Server starts an embedded nats-server with JetStream enabled, listening on
// 127.0.0.1 on a random port and storing streams under t.TempDir(). It
// returns the client URL and the server. The server is shut down, and waited
// for, when the test ends. Server fails the test if the server cannot start.
// Each mod changes the server's options before it starts (users and their
// permissions, say).
func Server(t testing.TB, mod ...func(*server.Options)) (url string, srv *server.Server) {
	t.Helper()
	opts := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(), // registered first, so removed after shutdown
		NoLog:      true,
		NoSigs:     true,
	}
	for _, m := range mod {
		m(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(readyTimeout) {
		t.Fatalf("natstest: server not ready for connections after %v", readyTimeout)
	}
	if !srv.JetStreamEnabled() {
		t.Fatal("natstest: JetStream is not enabled")
	}
	return srv.ClientURL(), srv
}

// Connect connects to the server at url and returns the connection and a
// JetStream context on it. The connection is closed when the test ends
// (before a server started earlier by Server is shut down). Connect fails the
// test if it cannot connect.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(t.Name())}, opts...)...)
	if err != nil {
		t.Fatalf("natstest: connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

func cmdUp(ctx context.Context, args []string) error {
	fs := newFlagSet("up", "corral up [--listen 127.0.0.1:4222] [--data DIR] [--slots N] [--image NAME]",
		`Runs everything one machine needs in one foreground process: an embedded
NATS server with JetStream (storing under DIR/nats) and a worker. Prints the
URL to connect to; submit jobs with 'corral run' or any NATS client. Ctrl-C or
SIGTERM drains the worker and stops.`)
	listen := fs.String("listen", "127.0.0.1:4222", "address the NATS server listens on")
	wf := addWorkerFlags(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", *listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--listen %q: bad port", *listen)
	}
	log, err := wf.logger()
	if err != nil {
		return err
	}
	defer log.Sync()
	store := filepath.Join(*wf.data, "nats")
	if err := os.MkdirAll(store, 0o700); err != nil {
		return err
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "corral",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   store,
		NoSigs:     true,
	})
	if err != nil {
		return err
	}
	go srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("NATS server did not start on %s", *listen)
	}
	url := srv.ClientURL()
	ctx, lost := withConnLoss(ctx, log)
	nc, err := nats.Connect(url, nats.Name("corral-up"), nats.MaxReconnects(-1), nats.ClosedHandler(lost))
	if err != nil {
		return err
	}
	defer nc.Close()
	w, cleanup, err := wf.startWorker(ctx, nc, log)
	if err != nil {
		return err
	}
	log.Info("corral is up", zap.String("nats", url), zap.String("data", *wf.data))
	fmt.Printf("corral is up: NATS at %s\n  try: corral run --nats %s -- sh -c 'echo hello'\n", url, url)
	<-ctx.Done()
	log.Info("stopping: no new jobs; finishing running ones")
	w.Stop()
	cleanup()
	if err := context.Cause(ctx); errors.Is(err, errConnClosed) {
		return err
	}
	return nil
}

package worker

import (
	"context"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/corralhq/corral/jobs"
)

// jsObjects is the ObjectStore on JetStream object stores: job files come
// from any bucket, collected files go to corral-files.
type jsObjects struct {
	js      jetstream.JetStream
	results jetstream.ObjectStore
}

func (o jsObjects) Get(ctx context.Context, bucket, name string) ([]byte, error) {
	store, err := o.js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return store.GetBytes(ctx, name)
}

func (o jsObjects) Put(ctx context.Context, name string, r io.Reader) (string, error) {
	if _, err := o.results.Put(ctx, jetstream.ObjectMeta{Name: name}, r); err != nil {
		return "", err
	}
	return jobs.ObjectBucket + "/" + name, nil
}

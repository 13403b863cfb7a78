package worker

import (
	"context"
	"errors"
	"fmt"
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

// ErrNoObject is what an ObjectStore's Get returns (wrapped) for a bucket
// or object that does not exist: the job named it wrongly and is rejected.
// Any other error may pass (the server busy, the connection lost), and the
// job is tried again.
var ErrNoObject = errors.New("no such object")

// ErrObjectTooBig is an object larger than the job's writable layer: it
// could not be written, and reading it would only cost the worker memory.
var ErrObjectTooBig = errors.New("object larger than the job's disk_bytes")

func (o jsObjects) Get(ctx context.Context, bucket, name string, max int64) ([]byte, error) {
	store, err := o.js.ObjectStore(ctx, bucket)
	if err == nil {
		var info *jetstream.ObjectInfo
		if info, err = store.GetInfo(ctx, name); err == nil {
			if int64(info.Size) > max {
				return nil, fmt.Errorf("%w: %s/%s is %d bytes, disk_bytes %d", ErrObjectTooBig, bucket, name, info.Size, max)
			}
			var b []byte
			if b, err = store.GetBytes(ctx, name); err == nil {
				return b, nil
			}
		}
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, jetstream.ErrInvalidStoreName) {
		return nil, fmt.Errorf("%w: %s/%s: %v", ErrNoObject, bucket, name, err)
	}
	return nil, err
}

func (o jsObjects) Put(ctx context.Context, name string, r io.Reader) (string, error) {
	if _, err := o.results.Put(ctx, jetstream.ObjectMeta{Name: name}, r); err != nil {
		return "", err
	}
	return jobs.ObjectBucket + "/" + name, nil
}

// Package worker is the pool: JetStream consumers, slots of warm sandboxes per
// image, running a job's steps, publishing results, heartbeats, cancel and
// drain. It calls isolate, rootfs and netpool through the small interfaces it
// declares itself.
package worker

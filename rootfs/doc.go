// Package rootfs builds, stores and mounts the read-only images that
// sandboxes run on.
//
// An image is a stack of squashfs layers, bottom first. The store keeps them
// under a data directory (default /var/lib/corral):
//
//	<data>/images/<name>.json             one manifest per image (an Image as JSON)
//	<data>/images/.lock                   flock(2) held while layers and manifests change
//	<data>/layers/sha256/<hex>.sqfs       layers, content-addressed by the sha256 of the file
//	<data>/tmp/build-<pid>-<random>/      scratch space of a running Build
//	<data>/run/<pid>/layers/<hex>         mount points of one process's Mounter
//
// # Building
//
// Build runs mksquashfs (squashfs-tools) over a directory, or over a .tar,
// .tar.gz or .tgz archive that it first extracts with GNU tar. The archive is
// extracted as root, keeping numeric owners, modes and device nodes: it is
// trusted exactly as much as the operator who passes it. Nothing in a job can
// reach Build.
//
// Building a name that already exists replaces that image atomically: the new
// manifest is renamed over the old one, then layers no image refers to any
// more are deleted. Images built on top of the old one (with Base) keep
// working, since they record layers by digest, not by base name; a sandbox
// that has the old layers mounted keeps them until it releases them.
//
// The layer digest is the sha256 of the squashfs file. mksquashfs runs with
// -mkfs-time 0, so the same tree (contents, owners, modes, mtimes) gives the
// same file and the same layer. The image digest is the sha256 of the layer
// digests, bottom first, each followed by a newline.
//
// # Mounting
//
// A Mounter attaches each layer to a loop device (LOOP_CTL_GET_FREE and
// LOOP_CONFIGURE, read-only, autoclear) and mounts it read-only, nodev and
// nosuid, once per Mounter. Sandboxes share the mount; it is reference counted
// and unmounted by the last release, and the autoclear flag frees the loop
// device when the kernel drops the mount. The Mounter's run directory is bind
// mounted onto itself and made private first, so no layer mount propagates to
// other mount namespaces, even when the host's mounts are shared (systemd).
//
// CleanStale removes what a crashed process left under <data>/run and
// <data>/tmp.
package rootfs

// Package netpool gives sandboxes their network: "none" (the sandbox's own
// network namespace with only loopback, which isolate already makes; netpool
// does nothing) and "egress" (a veth from the sandbox's namespace to a
// per-worker bridge, an address from the worker's /24, NAT to the host's
// uplink, and a deny-by-default policy in nftables), prepared before a job
// needs one.
//
// # Names and addresses
//
// A worker id is 1 to 4 characters of [a-z0-9] (IFNAMSIZ leaves 15 bytes):
//
//	bridge            corral-<id>          gateway <block>.1/24, fixed MAC,
//	                                       alias "corral pid=<pid> start=<ticks>"
//	host end of veth  corral-<id>-<n>      port of the bridge, isolated
//	spare peer        corral-<id>.<n>      becomes eth0 in the sandbox
//	nftables tables   corral-<id>          one inet, one bridge family
//
// n is the last octet of the sandbox's address, 2 to 254. The worker's /24
// is block i of Config.Subnet (10.213.0.0/16 by default): i is the worker id
// when it is a decimal number below the number of blocks, otherwise the id's
// FNV-1a hash modulo that number. Start refuses a block already in use.
//
// # Policy
//
// Sandbox traffic is checked before NAT:
//
//	bridge prerouting   a port may only send IPv4 and ARP whose sender is
//	                    its own address (anti-spoofing: the rules below key
//	                    on the source address); unleased ports send nothing
//	inet forward        from the bridge: IPv6 rejected; the --dns servers on
//	                    port 53 accepted; destinations in the deny set
//	                    rejected (0/8, 127/8, 169.254/16, 224/4, 240/4, the
//	                    whole Subnet, Config.Deny); nothing back out of the
//	                    bridge; then the lease's egress_allow chain, if any.
//	                    To the bridge: only established/related traffic.
//	inet input          everything from the bridge is rejected: no host
//	                    address (gateway, uplink, loopback, other bridges)
//	                    answers a sandbox
//	inet postrouting    masquerade the /24 out of any other interface
//
// Ports of the bridge are isolated, so sandboxes cannot reach each other at
// layer 2 either.
//
// # Lifecycle
//
//	New(cfg) -> Start(ctx) -> Attach(ctx, "/proc/<pid>/ns/net", allow) -> Lease
//	                                        Lease.Release()
//	         -> Stop()
//
// Start sweeps leftovers of dead workers (CleanStale), checks that
// net.ipv4.ip_forward is on (it never changes it: ErrForwardingOff), and
// creates the bridge and tables. A background loop keeps Config.Spare veth
// pairs with addresses ready, so Attach only moves one end into the sandbox,
// names it eth0, adds the address and the default route. Release deletes the
// veth, the lease's rules, its neighbour entry and its conntrack entries and
// returns the address. Stop releases every lease and removes everything the
// pool created.
//
// ResolvConf and Hosts give the text of /etc/resolv.conf and /etc/hosts for
// sandboxes; mounting them is isolate's job. docs/network.md has the whole
// story for operators.
package netpool

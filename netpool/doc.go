// Package netpool gives sandboxes their network: "none" (a namespace with
// only loopback) and "egress" (a veth to a host bridge behind NAT with a
// deny-by-default policy), prepared before a job needs one.
//
// Until egress lands, sandboxes get loopback-only namespaces from isolate.
package netpool

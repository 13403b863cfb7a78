package netpool

import (
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Bridge port states (linux/if_bridge.h).
const (
	brStateDisabled   = 0
	brStateForwarding = 3
)

// portState asks the kernel for the bridge port state of the link at index:
// the IFLA_BRPORT_STATE in the slave data of its IFLA_LINKINFO. The
// netlink package parses a bridge port's other attributes but not this one.
func portState(s *nl.NetlinkSocket, index int) (uint8, error) {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{Len: unix.SizeofNlMsghdr, Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST},
		Sockets:  map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}},
	}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			return 0, err
		}
		if attrs, err = nestedAttr(attrs, unix.IFLA_LINKINFO); err != nil {
			return 0, err
		}
		if attrs, err = nestedAttr(attrs, nl.IFLA_INFO_SLAVE_DATA); err != nil {
			return 0, err
		}
		for _, d := range attrs {
			if d.Attr.Type == nl.IFLA_BRPORT_STATE && len(d.Value) > 0 {
				return d.Value[0], nil
			}
		}
	}
	return 0, fmt.Errorf("link %d is not a bridge port", index)
}

// nestedAttr parses the attributes nested in the first of attrs of type
// typ (none when there is no such attribute).
func nestedAttr(attrs []syscall.NetlinkRouteAttr, typ uint16) ([]syscall.NetlinkRouteAttr, error) {
	for _, a := range attrs {
		if a.Attr.Type&^unix.NLA_F_NESTED == typ {
			return nl.ParseRouteAttr(a.Value)
		}
	}
	return nil, nil
}

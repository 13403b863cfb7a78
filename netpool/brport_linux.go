package netpool

import (
	"fmt"

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
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_LINKINFO {
				continue
			}
			infos, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return 0, err
			}
			for _, info := range infos {
				if info.Attr.Type&^unix.NLA_F_NESTED != nl.IFLA_INFO_SLAVE_DATA {
					continue
				}
				data, err := nl.ParseRouteAttr(info.Value)
				if err != nil {
					return 0, err
				}
				for _, d := range data {
					if d.Attr.Type == nl.IFLA_BRPORT_STATE && len(d.Value) > 0 {
						return d.Value[0], nil
					}
				}
			}
		}
	}
	return 0, fmt.Errorf("link %d is not a bridge port", index)
}

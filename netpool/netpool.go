package netpool

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Errors returned by the pool. Compare with errors.Is.
var (
	// ErrUnsupported is returned on systems other than Linux.
	ErrUnsupported = errors.New("netpool: egress networking needs Linux")
	// ErrForwardingOff means net.ipv4.ip_forward is 0 in the pool's network
	// namespace. corral does not flip host sysctls: the operator enables it.
	ErrForwardingOff = errors.New("netpool: net.ipv4.ip_forward is 0; enable it (sysctl -w net.ipv4.ip_forward=1) for egress")
	// ErrInUse means a live process already owns this worker id's bridge.
	ErrInUse = errors.New("netpool: worker id in use by a live process")
	// ErrSubnetInUse means another interface already has an address in the
	// worker's /24.
	ErrSubnetInUse = errors.New("netpool: the worker's subnet is already in use")
	// ErrExhausted means every address of the worker's /24 is leased.
	ErrExhausted = errors.New("netpool: no free address")
	// ErrStopped is returned by Attach after Stop.
	ErrStopped = errors.New("netpool: pool stopped")
	// ErrBadConfig wraps every Validate error.
	ErrBadConfig = errors.New("netpool: bad config")
)

// DefaultSubnet is where every worker's /24 is carved from.
var DefaultSubnet = netip.MustParsePrefix("10.213.0.0/16")

// DefaultDeny are the destinations denied to egress sandboxes besides the
// ones that are always denied (see the package doc): the private ranges and
// carrier-grade NAT.
var DefaultDeny = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fc00::/7"),
}

// Config of a Pool. The zero value plus a WorkerID is usable.
type Config struct {
	// WorkerID is 1 to 4 characters of [a-z0-9], unique per host. It names
	// the bridge "corral<id>" ("corral0" by default), the veths "corral-<id>-<n>" and the nftables
	// tables "corral-<id>", and picks the worker's /24. Default "0".
	WorkerID string
	// Subnet (IPv4, /24 or wider) holds one /24 per worker: block i is
	// Subnet.Addr()+i*256. A decimal WorkerID below the number of blocks is
	// the block index; any other id is hashed (FNV-1a) onto a block. Start
	// refuses a block that another interface already uses. Default
	// 10.213.0.0/16.
	Subnet netip.Prefix
	// Deny lists destination CIDRs denied to egress sandboxes on top of the
	// always-denied ones. Nil means DefaultDeny; an empty non-nil slice means
	// none. IPv6 entries are accepted (egress is IPv4-only, IPv6 is always
	// denied).
	Deny []netip.Prefix
	// DNS servers written into resolv.conf; sandboxes may always reach them
	// on port 53 (UDP and TCP), even inside a denied range. Default none.
	DNS []netip.Addr
	// RateBitsPerSec limits each sandbox's outgoing traffic, what it
	// uploads (token bucket on its eth0, which the job cannot change
	// without CAP_NET_ADMIN). 0, the default, is off.
	RateBitsPerSec uint64
	// DownloadBitsPerSec limits each sandbox's incoming traffic (token
	// bucket on the host end of its veth, where the bridge hands it the
	// packets: outside the sandbox). 0, the default, is off.
	DownloadBitsPerSec uint64
	// Spare is how many veth pairs with addresses are kept ready, so that
	// Attach only moves one end into the sandbox. Default 4; negative: none.
	Spare int
	// NetNS is the path of the network namespace the pool's bridge, veths
	// and tables live in. Default: the namespace of the thread calling Start
	// (the host's, in production). Tests point it at a namespace they made.
	NetNS string
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.WorkerID == "" {
		c.WorkerID = "0"
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if c.Deny == nil {
		c.Deny = DefaultDeny
	}
	if c.Spare == 0 {
		c.Spare = 4
	}
	if c.Spare < 0 {
		c.Spare = 0
	}
	return c
}

// Validate checks c (after WithDefaults).
func (c Config) Validate() error {
	if len(c.WorkerID) < 1 || len(c.WorkerID) > 4 {
		return fmt.Errorf("%w: worker id %q must be 1 to 4 characters", ErrBadConfig, c.WorkerID)
	}
	for _, r := range c.WorkerID {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Errorf("%w: worker id %q may only hold a-z and 0-9", ErrBadConfig, c.WorkerID)
		}
	}
	if !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 24 || c.Subnet.Bits() < 8 {
		return fmt.Errorf("%w: subnet %s must be IPv4, /8 to /24", ErrBadConfig, c.Subnet)
	}
	for _, d := range c.Deny {
		if !d.IsValid() {
			return fmt.Errorf("%w: invalid deny prefix", ErrBadConfig)
		}
	}
	for _, r := range []struct {
		what string
		bits uint64
	}{{"upload", c.RateBitsPerSec}, {"download", c.DownloadBitsPerSec}} {
		if r.bits > 0 && r.bits < 8000 {
			return fmt.Errorf("%w: %s rate %d bits/s is below 8000 (0: no limit)", ErrBadConfig, r.what, r.bits)
		}
	}
	if c.Spare > 64 {
		return fmt.Errorf("%w: spare %d is above 64", ErrBadConfig, c.Spare)
	}
	return nil
}

// block returns the worker's /24.
func (c Config) block() netip.Prefix {
	n := uint32(1) << (24 - c.Subnet.Bits())
	idx, err := strconv.ParseUint(c.WorkerID, 10, 32)
	if err != nil || uint32(idx) >= n {
		h := uint32(2166136261)
		for i := 0; i < len(c.WorkerID); i++ {
			h ^= uint32(c.WorkerID[i])
			h *= 16777619
		}
		idx = uint64(h % n)
	}
	b := c.Subnet.Masked().Addr().As4()
	v := u32(b) + uint32(idx)<<8
	return netip.PrefixFrom(addr4(v), 24)
}

// Allow is one entry of a job's egress_allow list: destinations in Prefix,
// on Port (TCP or UDP) or, when Port is 0, on any port and protocol.
type Allow struct {
	Prefix netip.Prefix
	Port   uint16
}

func (a Allow) String() string {
	if a.Port == 0 {
		return a.Prefix.String()
	}
	if a.Prefix.Addr().Is6() {
		return "[" + a.Prefix.String() + "]:" + strconv.Itoa(int(a.Port))
	}
	return a.Prefix.String() + ":" + strconv.Itoa(int(a.Port))
}

// ParseAllow parses "CIDR", "IP", "CIDR:port", "IP:port", or for IPv6 with a
// port "[CIDR]:port". The prefix is masked to its network.
func ParseAllow(s string) (Allow, error) {
	bad := func(why string) (Allow, error) {
		return Allow{}, fmt.Errorf("netpool: egress_allow %q: %s", s, why)
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return bad("missing ]")
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if !strings.HasPrefix(port, ":") {
				return bad("expected :port after ]")
			}
			port = port[1:]
			if port == "" {
				return bad("empty port")
			}
		}
	} else if _, err := parsePrefix(s); err != nil {
		i := strings.LastIndex(s, ":")
		if i < 0 {
			return bad("not a CIDR or IP")
		}
		host, port = s[:i], s[i+1:]
		if strings.Contains(host, ":") {
			return bad("an IPv6 address with a port needs brackets: [addr]:port")
		}
		if port == "" {
			return bad("empty port")
		}
	}
	p, err := parsePrefix(host)
	if err != nil {
		return bad("not a CIDR or IP")
	}
	a := Allow{Prefix: p}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return bad("port must be 1 to 65535")
		}
		a.Port = uint16(n)
	}
	return a, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, errors.New("zone not allowed")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("zone not allowed")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ResolvConf returns the text of a sandbox's /etc/resolv.conf naming dns
// (glibc reads at most three servers). Without servers it has none, so
// lookups fail fast instead of trying the sandbox's own loopback.
func ResolvConf(dns []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString("# written by corral\n")
	for _, a := range dns {
		if a.IsValid() {
			fmt.Fprintf(&b, "nameserver %s\n", a.Unmap())
		}
	}
	b.WriteString("options timeout:2 attempts:2\n")
	return b.Bytes()
}

// Hosts returns the text of a sandbox's /etc/hosts: loopback names only.
func Hosts() []byte {
	return []byte("# written by corral\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

func u32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

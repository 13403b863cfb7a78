package netpool

import (
	"encoding/binary"
	"net/netip"
	"sort"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The pool's nftables objects. Two tables named "corral-<id>":
//
//	bridge corral-<id>  chain prerouting: iifname vmap @ports; iifname "corral-<id>-*" drop
//	                    chain p<n> (one per lease): ip saddr <addr> accept;
//	                                                arp saddr ip <addr> accept; drop
//	inet corral-<id>    chain forward (hook forward): iifname br jump egress;
//	                        oifname br ct state established,related accept; oifname br drop
//	                    chain egress: ipv6 reject; dns:53 accept; daddr @deny reject;
//	                        oifname br reject; ip saddr vmap @narrow
//	                    chain a<n> (leases with egress_allow): allowed accept; reject
//	                    chain input (hook input): iifname br reject
//	                    chain postrouting (nat): ip saddr <block> oifname != br masquerade
type rules struct {
	id     string
	bridge string
	block  netip.Prefix

	inet, br      *nftables.Table
	ports, narrow *nftables.Set
	egress        *nftables.Chain
	deny, dns     *nftables.Set
}

func newRules(id string, block netip.Prefix) *rules {
	r := &rules{id: id, bridge: bridgeName(id), block: block}
	r.inet = &nftables.Table{Name: tableName(id), Family: nftables.TableFamilyINet}
	r.br = &nftables.Table{Name: tableName(id), Family: nftables.TableFamilyBridge}
	r.ports = &nftables.Set{Table: r.br, Name: "ports", IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
	r.narrow = &nftables.Set{Table: r.inet, Name: "narrow", IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	r.deny = &nftables.Set{Table: r.inet, Name: "deny", Interval: true, KeyType: nftables.TypeIPAddr}
	r.dns = &nftables.Set{Table: r.inet, Name: "dns", KeyType: nftables.TypeIPAddr}
	r.egress = &nftables.Chain{Name: "egress", Table: r.inet}
	return r
}

func tableName(id string) string { return "corral-" + id }

// alwaysDenied are denied whatever the operator configures.
var alwaysDenied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// install adds both tables in one batch (the caller flushes).
func (r *rules) install(c *nftables.Conn, subnet netip.Prefix, deny []netip.Prefix, dns []netip.Addr) error {
	c.AddTable(r.inet)
	c.AddTable(r.br)

	// Bridge: anti-spoofing per port.
	if err := c.AddSet(r.ports, nil); err != nil {
		return err
	}
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: r.br, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200)})
	c.AddRule(&nftables.Rule{Table: r.br, Chain: pre, Exprs: []expr.Any{
		meta(expr.MetaKeyIIFNAME), &expr.Lookup{SourceRegister: 1, SetName: r.ports.Name, SetID: r.ports.ID, DestRegister: 0, IsDestRegSet: true},
	}})
	c.AddRule(&nftables.Rule{Table: r.br, Chain: pre, Exprs: []expr.Any{
		meta(expr.MetaKeyIIFNAME), eq([]byte(vethPrefix(r.id))), verdict(expr.VerdictDrop),
	}})

	// inet: policy.
	var elems []nftables.SetElement
	for _, rg := range mergeRanges(append(append([]netip.Prefix{subnet}, alwaysDenied...), deny...)) {
		elems = append(elems, nftables.SetElement{Key: be32(rg[0])})
		if rg[1] != ^uint32(0) {
			elems = append(elems, nftables.SetElement{Key: be32(rg[1] + 1), IntervalEnd: true})
		}
	}
	if err := c.AddSet(r.deny, elems); err != nil {
		return err
	}
	var dnsElems []nftables.SetElement
	for _, a := range dns {
		if a = a.Unmap(); a.Is4() {
			b := a.As4()
			dnsElems = append(dnsElems, nftables.SetElement{Key: b[:]})
		}
	}
	if err := c.AddSet(r.dns, dnsElems); err != nil {
		return err
	}
	if err := c.AddSet(r.narrow, nil); err != nil {
		return err
	}
	br := ifname(r.bridge)
	reject := &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}

	eg := c.AddChain(r.egress)
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: eg, Exprs: []expr.Any{
		meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV6}), reject,
	}})
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		c.AddRule(&nftables.Rule{Table: r.inet, Chain: eg, Exprs: []expr.Any{
			meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV4}),
			ipDaddr(), &expr.Lookup{SourceRegister: 1, SetName: r.dns.Name, SetID: r.dns.ID},
			meta(expr.MetaKeyL4PROTO), eq([]byte{proto}),
			dport(), eq([]byte{0, 53}),
			verdict(expr.VerdictAccept),
		}})
	}
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: eg, Exprs: []expr.Any{
		meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV4}),
		ipDaddr(), &expr.Lookup{SourceRegister: 1, SetName: r.deny.Name, SetID: r.deny.ID}, reject,
	}})
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: eg, Exprs: []expr.Any{
		meta(expr.MetaKeyOIFNAME), eq(br), reject,
	}})
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: eg, Exprs: []expr.Any{
		meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV4}),
		ipSaddr(), &expr.Lookup{SourceRegister: 1, SetName: r.narrow.Name, SetID: r.narrow.ID, DestRegister: 0, IsDestRegSet: true},
	}})

	accept := nftables.ChainPolicyAccept
	fw := c.AddChain(&nftables.Chain{Name: "forward", Table: r.inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: fw, Exprs: []expr.Any{
		meta(expr.MetaKeyIIFNAME), eq(br), &expr.Verdict{Kind: expr.VerdictJump, Chain: r.egress.Name},
	}})
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: fw, Exprs: []expr.Any{
		meta(expr.MetaKeyOIFNAME), eq(br),
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: nativeU32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		verdict(expr.VerdictAccept),
	}})
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: fw, Exprs: []expr.Any{
		meta(expr.MetaKeyOIFNAME), eq(br), verdict(expr.VerdictDrop),
	}})

	in := c.AddChain(&nftables.Chain{Name: "input", Table: r.inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: in, Exprs: []expr.Any{
		meta(expr.MetaKeyIIFNAME), eq(br), reject,
	}})

	nat := c.AddChain(&nftables.Chain{Name: "postrouting", Table: r.inet, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	net := r.block.Addr().As4()
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: nat, Exprs: []expr.Any{
		meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV4}),
		ipSaddr(), mask(r.block.Bits()), eq(net[:]),
		meta(expr.MetaKeyOIFNAME), &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: br},
		&expr.Masq{},
	}})
	return nil
}

// addLease adds the lease's anti-spoofing chain and, when allow is not
// empty, its narrowing chain (the caller flushes).
func (r *rules) addLease(c *nftables.Conn, n int, host string, addr netip.Addr, allow []Allow) error {
	a := addr.As4()
	pc := c.AddChain(&nftables.Chain{Name: "p" + strconv.Itoa(n), Table: r.br})
	c.AddRule(&nftables.Rule{Table: r.br, Chain: pc, Exprs: []expr.Any{
		meta(expr.MetaKeyPROTOCOL), eq([]byte{0x08, 0x00}),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}, eq(a[:]),
		verdict(expr.VerdictAccept),
	}})
	c.AddRule(&nftables.Rule{Table: r.br, Chain: pc, Exprs: []expr.Any{
		meta(expr.MetaKeyPROTOCOL), eq([]byte{0x08, 0x06}),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4}, eq(a[:]),
		verdict(expr.VerdictAccept),
	}})
	c.AddRule(&nftables.Rule{Table: r.br, Chain: pc, Exprs: []expr.Any{verdict(expr.VerdictDrop)}})
	if err := c.SetAddElements(r.ports, []nftables.SetElement{{Key: ifname(host),
		VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: pc.Name}}}); err != nil {
		return err
	}
	if len(allow) == 0 {
		return nil
	}
	ac := c.AddChain(&nftables.Chain{Name: "a" + strconv.Itoa(n), Table: r.inet})
	for _, al := range allow {
		if !al.Prefix.Addr().Is4() {
			continue // IPv6 egress is always denied
		}
		net := al.Prefix.Masked().Addr().As4()
		match := []expr.Any{ipDaddr(), mask(al.Prefix.Bits()), eq(net[:])}
		if al.Port == 0 {
			c.AddRule(&nftables.Rule{Table: r.inet, Chain: ac, Exprs: append(match, verdict(expr.VerdictAccept))})
			continue
		}
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			ex := append(append([]expr.Any{}, match...),
				meta(expr.MetaKeyL4PROTO), eq([]byte{proto}),
				dport(), eq(binary.BigEndian.AppendUint16(nil, al.Port)),
				verdict(expr.VerdictAccept))
			c.AddRule(&nftables.Rule{Table: r.inet, Chain: ac, Exprs: ex})
		}
	}
	c.AddRule(&nftables.Rule{Table: r.inet, Chain: ac, Exprs: []expr.Any{
		&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED},
	}})
	return c.SetAddElements(r.narrow, []nftables.SetElement{{Key: a[:],
		VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: ac.Name}}})
}

// delLease undoes addLease (the caller flushes).
func (r *rules) delLease(c *nftables.Conn, n int, host string, addr netip.Addr, narrowed bool) error {
	if err := c.SetDeleteElements(r.ports, []nftables.SetElement{{Key: ifname(host)}}); err != nil {
		return err
	}
	pc := &nftables.Chain{Name: "p" + strconv.Itoa(n), Table: r.br}
	c.FlushChain(pc)
	c.DelChain(pc)
	if narrowed {
		a := addr.As4()
		if err := c.SetDeleteElements(r.narrow, []nftables.SetElement{{Key: a[:]}}); err != nil {
			return err
		}
		ac := &nftables.Chain{Name: "a" + strconv.Itoa(n), Table: r.inet}
		c.FlushChain(ac)
		c.DelChain(ac)
	}
	return nil
}

func meta(k expr.MetaKey) expr.Any { return &expr.Meta{Key: k, Register: 1} }
func eq(b []byte) expr.Any         { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b} }
func verdict(k expr.VerdictKind) expr.Any {
	return &expr.Verdict{Kind: k}
}
func ipSaddr() expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}
func ipDaddr() expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}
func dport() expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}
func mask(bits int) expr.Any {
	m := be32(^uint32(0) << (32 - bits))
	if bits == 0 {
		m = []byte{0, 0, 0, 0}
	}
	return &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: []byte{0, 0, 0, 0}}
}

func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func nativeU32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// mergeRanges turns the IPv4 prefixes of ps into sorted, disjoint,
// non-adjacent [first, last] ranges (interval sets reject overlaps).
func mergeRanges(ps []netip.Prefix) [][2]uint32 {
	var rs [][2]uint32
	for _, p := range ps {
		if !p.Addr().Unmap().Is4() {
			continue
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), min(p.Bits(), 32)).Masked()
		lo := u32(p.Addr().As4())
		hi := lo | (^uint32(0) >> p.Bits())
		if p.Bits() == 0 {
			hi = ^uint32(0)
		}
		rs = append(rs, [2]uint32{lo, hi})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var out [][2]uint32
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && (out[k][1] == ^uint32(0) || r[0] <= out[k][1]+1) {
			out[k][1] = max(out[k][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

package webhooks

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"syscall"

	"golang.org/x/net/idna"
)

// allowFlag is the command-line flag that sets [Options].AllowNetworks;
// refusals name it, for the operator who reads them.
const allowFlag = "--webhook-allow-networks"

// AddressError says why a webhook may not reach an address: it is not a
// public one and no allowed network holds it.
type AddressError struct {
	// Addr is the address refused; it is zero for a name that is
	// refused as such (localhost).
	Addr netip.Addr
	// Host is the URL's host as written, when it differs from Addr.
	Host string
	// Reason names the address's range: "loopback", "private (RFC
	// 1918)", "link-local", ….
	Reason string
}

// Error says which address was refused and why, as a delivery attempt
// records it.
func (e *AddressError) Error() string {
	return fmt.Sprintf("webhook address %s is %s; allow it with %s", e.where(), e.Reason, allowFlag)
}

// fieldMessage says the same about an endpoint URL, for the url field of
// a refused registration.
func (e *AddressError) fieldMessage() string {
	return fmt.Sprintf("points at %s, which is %s: webhooks reach only public addresses unless the server allows the range with %s",
		e.where(), e.Reason, allowFlag)
}

// where is the address, with the host as written when that differs.
func (e *AddressError) where() string {
	switch {
	case !e.Addr.IsValid():
		return e.Host
	case e.Host == "" || e.Host == e.Addr.String():
		return e.Addr.String()
	}
	return fmt.Sprintf("%s (written %s)", e.Addr, e.Host)
}

// ParseNetworks parses a comma-separated list of CIDR ranges, as in
// "10.0.0.0/8,127.0.0.0/8,fd00::/8", for [Options].AllowNetworks. Blank
// entries are skipped; each range is returned masked (10.1.2.3/8 is
// 10.0.0.0/8).
func ParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range such as 10.0.0.0/8 or fd00::/8", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// special is a range of addresses that are not public.
type special struct {
	prefix netip.Prefix
	reason string
}

// specials are the ranges refused by default, from IANA's special-purpose
// address registries; a narrower range comes before a wider one that
// holds it.
var specials = func() []special {
	rs := []struct{ cidr, reason string }{
		{"0.0.0.0/32", "unspecified"},
		{"0.0.0.0/8", `"this network" (0.0.0.0/8)`},
		{"10.0.0.0/8", "private (RFC 1918)"},
		{"100.64.0.0/10", "shared address space (carrier-grade NAT, RFC 6598)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private (RFC 1918)"},
		{"192.0.0.0/24", "reserved for IETF protocols"},
		{"192.0.2.0/24", "documentation"},
		{"192.88.99.0/24", "6to4 relay anycast (deprecated)"},
		{"192.168.0.0/16", "private (RFC 1918)"},
		{"198.18.0.0/15", "benchmarking"},
		{"198.51.100.0/24", "documentation"},
		{"203.0.113.0/24", "documentation"},
		{"224.0.0.0/4", "multicast"},
		{"255.255.255.255/32", "broadcast"},
		{"240.0.0.0/4", "reserved"},

		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"64:ff9b:1::/48", "NAT64 for local use"},
		{"100::/64", "discard-only"},
		{"2001::/32", "Teredo"},
		{"2001:2::/48", "benchmarking"},
		{"2001::/23", "reserved for IETF protocols"},
		{"2001:db8::/32", "documentation"},
		{"3fff::/20", "documentation"},
		{"fc00::/7", "unique-local"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local (deprecated)"},
		{"ff00::/8", "multicast"},
	}
	out := make([]special, len(rs))
	for i, r := range rs {
		out[i] = special{netip.MustParsePrefix(r.cidr), r.reason}
	}
	return out
}()

// Ranges that carry an IPv4 address inside an IPv6 one.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
	// globalUnicast is the only IPv6 space allocated for public
	// addresses; anything outside it not named above is reserved.
	globalUnicast = netip.MustParsePrefix("2000::/3")
)

// classify says why a is not a public address: the name of its special
// range (loopback, private, link-local, unique-local, multicast,
// unspecified, broadcast, …), or "" when it is public. An IPv6 address
// that stands for an IPv4 one (IPv4-mapped, NAT64 64:ff9b::/96, 6to4
// 2002::/16) is judged by that address, which is then returned as
// embedded. a's zone is ignored.
func classify(a netip.Addr) (reason string, embedded netip.Addr) {
	a = a.WithZone("")
	if !a.IsValid() {
		return "not an IP address", netip.Addr{}
	}
	if v4, form, ok := embeddedIPv4(a); ok {
		why, _ := classify(v4)
		if why == "" {
			return "", netip.Addr{}
		}
		return fmt.Sprintf("%s (%s %s)", why, form, v4), v4
	}
	for _, s := range specials {
		if s.prefix.Contains(a) {
			return s.reason, netip.Addr{}
		}
	}
	if a.Is6() && !globalUnicast.Contains(a) {
		return "reserved (outside 2000::/3)", netip.Addr{}
	}
	return "", netip.Addr{}
}

// embeddedIPv4 returns the IPv4 address an IPv6 address stands for, and
// how it is written.
func embeddedIPv4(a netip.Addr) (netip.Addr, string, bool) {
	b := a.As16()
	switch {
	case a.Is4In6():
		return a.Unmap(), "IPv4-mapped", true
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64 of", true
	case sixTo4.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4 of", true
	}
	return netip.Addr{}, "", false
}

// guard decides which addresses webhooks may reach: public ones, and
// those in its allowed networks.
type guard struct {
	allow []netip.Prefix
}

// allowed reports whether an allowed network holds a, in either of its
// IPv4 and IPv4-mapped forms.
func (g guard) allowed(a netip.Addr) bool {
	a = a.WithZone("")
	for _, p := range g.allow {
		if p.Contains(a) || p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// refusal returns why a may not be reached when it is neither public nor
// allowed, and nil otherwise. An IPv6 address that stands for an IPv4
// one is allowed when either is.
func (g guard) refusal(a netip.Addr) *AddressError {
	if g.allowed(a) {
		return nil
	}
	why, embedded := classify(a)
	if why == "" || (embedded.IsValid() && g.allowed(embedded)) {
		return nil
	}
	return &AddressError{Addr: a.WithZone(""), Reason: why}
}

// control is the checked dialer's Control hook: it sees the address
// each connection is about to be made to, after DNS resolution, and
// refuses it when it is neither public nor allowed.
func (g guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: check the address %q: %w", address, err)
	}
	if e := g.refusal(ap.Addr()); e != nil {
		return e
	}
	return nil
}

// loopbacks are what the name localhost stands for.
var loopbacks = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}

// checkURL checks the host of an endpoint URL as written, before any DNS
// lookup: see [guard.checkHost]. Names are left to the dialer's check at
// delivery.
func (g guard) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a valid URL")
	}
	return g.checkHost(u.Hostname())
}

// checkHost refuses a host that is a literal address neither public nor
// allowed, in any form the URL parser, net/http or the C resolver reads
// as an address (2130706433, 0x7f.1, 127.1, ::ffff:127.0.0.1, full-width
// digits, a trailing dot), and the names localhost and *.localhost
// unless a loopback address is allowed. A host that looks like an IPv4
// address but is not a valid one is refused too.
func (g guard) checkHost(host string) error {
	h := canonicalHost(host)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		for _, a := range loopbacks {
			if g.allowed(a) {
				return nil
			}
		}
		return &AddressError{Host: host, Reason: "loopback"}
	}
	a, err := hostAddr(h)
	if err != nil || !a.IsValid() {
		return err
	}
	if e := g.refusal(a); e != nil {
		e.Host = host
		return e
	}
	return nil
}

// canonicalHost is host as net/http dials it (IDNA-mapped, so full-width
// characters become ASCII), in lower case and without trailing dots.
func canonicalHost(host string) string {
	h := strings.ToLower(host)
	if !isASCII(h) {
		if a, err := idna.Lookup.ToASCII(h); err == nil {
			h = a
		}
	}
	return strings.TrimRight(h, ".")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// hostAddr returns the address host stands for when it is an address
// literal: IPv6 (its zone dropped), or IPv4 in any form inet_aton reads
// (127.1, 0x7f.0.0.1, 0177.0.0.1, 2130706433). As in the URL standard, a
// host whose last label starts with a digit is an IPv4 address and must
// be a valid one; any other host is a name, returned as the zero Addr.
func hostAddr(host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.WithZone(""), nil
	}
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if last == "" || last[0] < '0' || last[0] > '9' {
		return netip.Addr{}, nil
	}
	a, ok := parseIPv4Loose(labels)
	if !ok {
		return netip.Addr{}, errors.New("looks like an IPv4 address but is not a valid one")
	}
	return a, nil
}

// parseIPv4Loose reads an IPv4 address as inet_aton does: one to four
// parts, each decimal, octal (a leading 0) or hexadecimal (0x), the last
// filling the bytes the others leave.
func parseIPv4Loose(parts []string) (netip.Addr, bool) {
	n := len(parts)
	if n > 4 {
		return netip.Addr{}, false
	}
	var ip uint32
	for i, p := range parts {
		v, ok := parseIPv4Part(p)
		if !ok {
			return netip.Addr{}, false
		}
		if i < n-1 {
			if v > 0xff {
				return netip.Addr{}, false
			}
			ip |= uint32(v) << (24 - 8*i)
			continue
		}
		if v>>(8*(5-n)) != 0 {
			return netip.Addr{}, false
		}
		ip |= uint32(v)
	}
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// parseIPv4Part reads one part of a loose IPv4 address, up to 2^32-1.
func parseIPv4Part(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'):
		base, p = 16, p[2:]
	case len(p) > 1 && p[0] == '0':
		base, p = 8, p[1:]
	}
	var v uint64
	for i := 0; i < len(p); i++ {
		d := hexDigit(p[i])
		if d >= base {
			return 0, false
		}
		v = v*base + d
		if v > 0xffffffff {
			return 0, false
		}
	}
	return v, true
}

// hexDigit is c's value as a hexadecimal digit, or 16 when it is none.
func hexDigit(c byte) uint64 {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0')
	case c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return uint64(c-'A') + 10
	}
	return 16
}

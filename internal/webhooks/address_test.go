package webhooks

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestClassify: every special range is refused with its name, and
// public addresses pass.
func TestClassify(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		addr, reason string // reason "": public
	}{
		// IPv4.
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "this network"},
		{"10.0.0.1", "private"},
		{"10.255.255.255", "private"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.254", "carrier-grade NAT"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"169.254.169.254", "link-local"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.0.0.8", "IETF protocols"},
		{"192.0.2.1", "documentation"},
		{"192.88.99.1", "6to4 relay"},
		{"192.168.1.1", "private"},
		{"198.18.0.1", "benchmarking"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "broadcast"},
		// IPv6.
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fc00::1", "unique-local"},
		{"fd12:3456::1", "unique-local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"100::1", "discard-only"},
		{"2001::1", "Teredo"},
		{"2001:2::1", "benchmarking"},
		{"2001:10::1", "IETF protocols"},
		{"2001:db8::1", "documentation"},
		{"3fff::1", "documentation"},
		{"64:ff9b:1::1", "NAT64 for local use"},
		{"::7f00:1", "reserved (outside 2000::/3)"}, // IPv4-compatible, deprecated
		{"5f00::1", "reserved (outside 2000::/3)"},
		// IPv6 forms of IPv4 addresses are judged by the IPv4 address.
		{"::ffff:127.0.0.1", "loopback (IPv4-mapped 127.0.0.1)"},
		{"::ffff:10.0.0.1", "private (RFC 1918) (IPv4-mapped 10.0.0.1)"},
		{"::ffff:0.0.0.0", "unspecified (IPv4-mapped 0.0.0.0)"},
		{"::ffff:169.254.169.254", "link-local (IPv4-mapped 169.254.169.254)"},
		{"64:ff9b::7f00:1", "loopback (NAT64 of 127.0.0.1)"},
		{"64:ff9b::a9fe:a9fe", "link-local (NAT64 of 169.254.169.254)"},
		{"2002:7f00:1::", "loopback (6to4 of 127.0.0.1)"},
		{"2002:c0a8:101::1", "private (RFC 1918) (6to4 of 192.168.1.1)"},
		// Public.
		{"93.184.215.14", ""},
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.15.255.255", ""},
		{"172.32.0.0", ""},
		{"192.0.1.1", ""},
		{"223.255.255.255", ""},
		{"2606:4700::1", ""},
		{"2001:4860:4860::8888", ""},
		{"2a00:1450:4001::1", ""},
		{"::ffff:93.184.215.14", ""},
		{"64:ff9b::5db8:d70e", ""}, // NAT64 of 93.184.215.14
		{"2002:5db8:d70e::1", ""},  // 6to4 of 93.184.215.14
	} {
		got, _ := classify(netip.MustParseAddr(c.addr))
		if c.reason == "" && got != "" || c.reason != "" && !strings.Contains(got, c.reason) {
			t.Errorf("%s: %q, want %q", c.addr, got, c.reason)
		}
	}
}

// TestGuardAllows: an allowed network lets its addresses through, in
// their IPv4-mapped and embedding forms too, and no others.
func TestGuardAllows(t *testing.T) {
	t.Parallel()
	allow, err := ParseNetworks("127.0.0.0/8, 10.0.0.0/8,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	g := guard{allow}
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"::ffff:127.0.0.1", true},
		{"2002:7f00:1::", true},
		{"64:ff9b::a00:1", true},
		{"10.20.30.40", true},
		{"fd00::1", true},
		{"93.184.215.14", true},
		{"2606:4700::1", true},
		{"::1", false},
		{"192.168.1.1", false},
		{"::ffff:192.168.1.1", false},
		{"fc00::1", false},
		{"169.254.169.254", false},
	} {
		e := g.refusal(netip.MustParseAddr(c.addr))
		if (e == nil) != c.ok {
			t.Errorf("%s: refusal %v, want allowed %v", c.addr, e, c.ok)
		}
	}
	// Everything allowed: nothing refused.
	all := guard{[]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
	for _, a := range []string{"127.0.0.1", "::1", "fe80::1%eth0", "::ffff:10.0.0.1", "255.255.255.255"} {
		if e := all.refusal(netip.MustParseAddr(a)); e != nil {
			t.Errorf("%s with everything allowed: %v", a, e)
		}
	}
}

// TestCheckHost: the host of a URL is refused when it is a non-public
// address in any form that the URL parser, net/http or the C resolver
// reads as one, or the name localhost; other names are left to the
// dialer.
func TestCheckHost(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		host, addr, reason string // addr "": a name, or refused as localhost
	}{
		{"127.0.0.1", "127.0.0.1", "loopback"},
		{"2130706433", "127.0.0.1", "loopback"},
		{"0x7f000001", "127.0.0.1", "loopback"},
		{"0x7f.1", "127.0.0.1", "loopback"},
		{"0X7F.0.0.1", "127.0.0.1", "loopback"},
		{"127.1", "127.0.0.1", "loopback"},
		{"127.0.1", "127.0.0.1", "loopback"},
		{"0177.0.0.1", "127.0.0.1", "loopback"},
		{"017700000001", "127.0.0.1", "loopback"},
		{"127.0.0.1.", "127.0.0.1", "loopback"},
		{"0", "0.0.0.0", "unspecified"},
		{"0.0.0.0", "0.0.0.0", "unspecified"},
		{"10.0.0.1", "10.0.0.1", "private"},
		{"167772161", "10.0.0.1", "private"},
		{"169.254.169.254", "169.254.169.254", "link-local"},
		{"0xa9fea9fe", "169.254.169.254", "link-local"},
		{"169.254.43518", "169.254.169.254", "link-local"},
		{"100.64.0.1", "100.64.0.1", "carrier-grade NAT"},
		{"255.255.255.255", "255.255.255.255", "broadcast"},
		{"4294967295", "255.255.255.255", "broadcast"},
		{"::1", "::1", "loopback"},
		{"::", "::", "unspecified"},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1", "loopback"},
		{"::ffff:7f00:1", "::ffff:127.0.0.1", "loopback"},
		{"0:0:0:0:0:ffff:127.0.0.1", "::ffff:127.0.0.1", "loopback"},
		{"fe80::1%eth0", "fe80::1", "link-local"},
		{"fd00::1", "fd00::1", "unique-local"},
		{"１２７.０.０.１", "127.0.0.1", "loopback"}, // full-width digits, as net/http maps them
		{"127。0。0。1", "127.0.0.1", "loopback"},
		{"localhost", "", "loopback"},
		{"localhost.", "", "loopback"},
		{"LocalHost", "", "loopback"},
		{"api.localhost", "", "loopback"},
		{"a.b.localhost.", "", "loopback"},
		{"ｌｏｃａｌｈｏｓｔ", "", "loopback"},
	} {
		err := guard{}.checkHost(c.host)
		var e *AddressError
		if !errors.As(err, &e) {
			t.Errorf("%q: %v, want an address error", c.host, err)
			continue
		}
		if c.addr != "" && e.Addr != netip.MustParseAddr(c.addr) || c.addr == "" && e.Addr.IsValid() || !strings.Contains(e.Reason, c.reason) {
			t.Errorf("%q: %+v, want %s %s", c.host, e, c.addr, c.reason)
		}
		if msg := e.Error(); !strings.Contains(msg, c.reason) || !strings.Contains(msg, "--webhook-allow-networks") {
			t.Errorf("%q: message %q", c.host, msg)
		}
		if c.addr != "" && c.host != c.addr && !strings.Contains(e.fieldMessage(), "(written "+c.host+")") {
			t.Errorf("%q: field message %q does not show the host as written", c.host, e.fieldMessage())
		}
	}
	// Public addresses in odd forms, and names, pass.
	for _, h := range []string{
		"93.184.215.14", "1572394766", "0x5d.0xb8.0xd7.0x0e", "2606:4700::1", "::ffff:93.184.215.14",
		"example.com", "example.com.", "localhost.example.com", "mylocalhost", "localhostx", "1e100.net", "0x7f.example", "xn--nxasmq6b.com", "bücher.example",
	} {
		if err := (guard{}).checkHost(h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	// What only looks like an IPv4 address is refused as such.
	for _, h := range []string{"1.2.3.4.5", "256.1.1.1", "127.0.0.256", "4294967296", "0x100000000", "09.0.0.1", "0xg.1", "1..1", "example.123", "127.0x1000000"} {
		if err := (guard{}).checkHost(h); err == nil || !strings.Contains(err.Error(), "not a valid") {
			t.Errorf("%q: %v, want refused as an invalid IPv4 address", h, err)
		}
	}
	// Allowed ranges let literals and localhost through.
	g := guard{[]netip.Prefix{loopback, netip.MustParsePrefix("10.0.0.0/8")}}
	for _, h := range []string{"127.0.0.1", "2130706433", "::ffff:127.0.0.1", "localhost", "api.localhost.", "10.1.2.3", "0xa.1"} {
		if err := g.checkHost(h); err != nil {
			t.Errorf("%q with loopback and 10/8 allowed: %v", h, err)
		}
	}
	if err := g.checkHost("::1"); err == nil {
		t.Error("::1 allowed by 127.0.0.0/8")
	}
	if err := (guard{[]netip.Prefix{netip.MustParsePrefix("::1/128")}}).checkHost("localhost"); err != nil {
		t.Errorf("localhost with ::1 allowed: %v", err)
	}
}

func TestParseNetworks(t *testing.T) {
	t.Parallel()
	got, err := ParseNetworks(" 10.1.2.3/8 ,127.0.0.0/8,,fd00::/8,")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].String() != "10.0.0.0/8" || got[1].String() != "127.0.0.0/8" || got[2].String() != "fd00::/8" {
		t.Errorf("%v", got)
	}
	if got, err := ParseNetworks(""); err != nil || got != nil {
		t.Errorf("empty: %v %v", got, err)
	}
	for _, s := range []string{"10.0.0.0", "10.0.0.0/33", "localhost/8", "10.0.0.0/8;127.0.0.0/8", "fe80::/10%eth0", "::/129"} {
		if _, err := ParseNetworks(s); err == nil || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("%q: %v", s, err)
		}
	}
}

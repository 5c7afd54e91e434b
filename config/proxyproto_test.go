package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestProxyProtocolKeys(t *testing.T) {
	base := "hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\n"
	tail := "[backend]\ndsn = \"host=/tmp\"\n"
	for _, tc := range []struct {
		name, toml string
		err        string // substring of the error; "" for none
		trusted    []string
		untrusted  []string
	}{
		{name: "default off", toml: ``, untrusted: []string{"127.0.0.1"}},
		{name: "off ignores list", toml: `proxy_protocol = "off"
proxy_protocol_trusted = ["127.0.0.1"]`, untrusted: []string{"127.0.0.1"}},
		{name: "on", toml: `proxy_protocol = "on"
proxy_protocol_trusted = ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]`,
			trusted:   []string{"127.0.0.1", "10.9.8.7", "::ffff:10.1.1.1", "fd00::1"},
			untrusted: []string{"127.0.0.2", "11.0.0.1", "::1"}},
		{name: "mapped prefix", toml: `proxy_protocol = "on"
proxy_protocol_trusted = ["::ffff:10.0.0.0/104"]`, trusted: []string{"10.0.0.1"}, untrusted: []string{"11.0.0.1"}},
		{name: "bad mode", toml: `proxy_protocol = "yes"`, err: `proxy_protocol: "yes" (on or off)`},
		{name: "on without list", toml: `proxy_protocol = "on"`, err: "proxy_protocol: on, but proxy_protocol_trusted is empty"},
		{name: "not cidr", toml: `proxy_protocol = "on"
proxy_protocol_trusted = ["balancer.example"]`, err: `proxy_protocol_trusted: "balancer.example": not an IP address or CIDR network`},
		{name: "host bits", toml: `proxy_protocol = "on"
proxy_protocol_trusted = ["10.1.2.3/8"]`, err: `:2: proxy_protocol_trusted: "10.1.2.3/8": has bits set right of the mask`},
		{name: "not array", toml: `proxy_protocol_trusted = "10.0.0.0/8"`, err: "proxy_protocol_trusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tc.toml+"\n"+base+tail))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range tc.trusted {
				if !c.ProxyTrusted(netip.MustParseAddr(a)) {
					t.Errorf("%s not trusted", a)
				}
			}
			for _, a := range tc.untrusted {
				if c.ProxyTrusted(netip.MustParseAddr(a)) {
					t.Errorf("%s trusted", a)
				}
			}
		})
	}
}

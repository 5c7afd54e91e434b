package config

import (
	"net/netip"
	"strings"
)

// ProxyProtocolOn reports whether PROXY protocol headers are read.
func (c *Config) ProxyProtocolOn() bool { return c.ProxyProtocol == "on" }

// ProxyTrusted reports whether a connection from addr must, and may, start
// with a PROXY protocol header. It is false whenever proxy_protocol is
// off.
func (c *Config) ProxyTrusted(addr netip.Addr) bool {
	if !c.ProxyProtocolOn() {
		return false
	}
	addr = addr.Unmap()
	for _, p := range c.proxyTrusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// validateProxyProtocol checks proxy_protocol and parses
// proxy_protocol_trusted.
func (c *Config) validateProxyProtocol() []error {
	var errs []error
	switch c.ProxyProtocol {
	case "", "off", "on":
	default:
		errs = append(errs, c.keyError("proxy_protocol", "%q (on or off)", c.ProxyProtocol))
	}
	c.proxyTrusted = nil
	for _, s := range c.ProxyProtocolTrusted {
		p, err := parseTrustedNet(s)
		if err != nil {
			errs = append(errs, c.keyError("proxy_protocol_trusted", "%q: %v", s, err))
			continue
		}
		c.proxyTrusted = append(c.proxyTrusted, p)
	}
	// "on" with nobody trusted would honour no header, and close every
	// connection that sent one: almost certainly a forgotten setting.
	if c.ProxyProtocolOn() && len(c.ProxyProtocolTrusted) == 0 {
		errs = append(errs, c.keyError("proxy_protocol", "on, but proxy_protocol_trusted is empty"))
	}
	return errs
}

// parseTrustedNet reads one proxy_protocol_trusted entry: a CIDR, or a
// single address. Bits set right of the mask are refused rather than
// masked away: "10.1.2.3/8" is more likely a typo than a wish to trust
// 10.0.0.0/8.
func parseTrustedNet(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errNotCIDR
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errNotCIDR
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errNotCIDR
	}
	if p.Masked() != p {
		return netip.Prefix{}, errHostBits
	}
	if p.Addr().Is4In6() {
		// ::ffff:10.0.0.0/104 is 10.0.0.0/8: clients are compared
		// unmapped.
		if p.Bits() < 96 {
			return netip.Prefix{}, errNotCIDR
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}

type cidrError string

func (e cidrError) Error() string { return string(e) }

const (
	errNotCIDR  cidrError = "not an IP address or CIDR network"
	errHostBits cidrError = "has bits set right of the mask"
)

package hba

import (
	"net/netip"
	"strconv"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// ConnType is a bitmask of the kinds of connection a record accepts. A
// record holds exactly one of the six keyword values below; the bits let a
// connection's kind be tested with a single AND.
type ConnType uint8

const (
	// ConnLocal is "local": Unix-domain sockets.
	ConnLocal ConnType = 1 << iota
	// ConnHostSSL is "hostssl": TCP with SSL.
	ConnHostSSL
	// ConnHostNoSSL is "hostnossl": TCP without SSL.
	ConnHostNoSSL
	// ConnHostGSS is "hostgssenc": TCP with GSSAPI encryption.
	ConnHostGSS
	// ConnHostNoGSS is "hostnogssenc": TCP without GSSAPI encryption.
	ConnHostNoGSS

	// ConnHostAny is "host": any TCP connection.
	ConnHostAny = ConnHostSSL | ConnHostNoSSL | ConnHostGSS | ConnHostNoGSS
	// ConnAny is every connection kind; no record has it.
	ConnAny = ConnLocal | ConnHostAny
)

// String returns the pg_hba.conf keyword of a record's connection type.
func (c ConnType) String() string {
	switch c {
	case ConnLocal:
		return "local"
	case ConnHostAny:
		return "host"
	case ConnHostSSL:
		return "hostssl"
	case ConnHostNoSSL:
		return "hostnossl"
	case ConnHostGSS:
		return "hostgssenc"
	case ConnHostNoGSS:
		return "hostnogssenc"
	}
	return "invalid"
}

// connTypes maps keywords to connection types (parse_hba_line compares
// the token without looking at quoting).
var connTypes = map[string]ConnType{
	"local": ConnLocal, "host": ConnHostAny, "hostssl": ConnHostSSL,
	"hostnossl": ConnHostNoSSL, "hostgssenc": ConnHostGSS, "hostnogssenc": ConnHostNoGSS,
}

// Method is an authentication method (hba.h UserAuth).
type Method int

// The methods PostgreSQL 18 knows. MethodInvalid is the zero value and is
// never the method of a parsed record.
const (
	MethodInvalid Method = iota
	MethodTrust
	MethodReject
	MethodSCRAM
	MethodMD5
	MethodPassword
	MethodGSS
	MethodSSPI
	MethodIdent
	MethodPeer
	MethodLDAP
	MethodRADIUS
	MethodCert
	MethodPAM
	MethodBSD
	MethodOAuth
)

var methodNames = [...]string{
	MethodInvalid: "invalid", MethodTrust: "trust", MethodReject: "reject",
	MethodSCRAM: "scram-sha-256", MethodMD5: "md5", MethodPassword: "password",
	MethodGSS: "gss", MethodSSPI: "sspi", MethodIdent: "ident", MethodPeer: "peer",
	MethodLDAP: "ldap", MethodRADIUS: "radius", MethodCert: "cert", MethodPAM: "pam",
	MethodBSD: "bsd", MethodOAuth: "oauth",
}

// String returns the method's pg_hba.conf keyword.
func (m Method) String() string {
	if m < 0 || int(m) >= len(methodNames) {
		return "invalid"
	}
	return methodNames[m]
}

func methodByName(name string) (Method, bool) {
	for m, n := range methodNames {
		if n == name && Method(m) != MethodInvalid {
			return Method(m), true
		}
	}
	return MethodInvalid, false
}

// ClientCertMode is the clientcert option (hba.h ClientCertMode).
type ClientCertMode int

const (
	// ClientCertNone: no client certificate is required.
	ClientCertNone ClientCertMode = iota
	// ClientCertVerifyCA: a certificate signed by a trusted CA is required.
	ClientCertVerifyCA
	// ClientCertVerifyFull: as verify-ca, and its name must match the user
	// (through the map, if any). The cert method always implies it.
	ClientCertVerifyFull
)

// String returns the option value, or "no-verify" for ClientCertNone (the
// word pg_hba_file_rules never shows but older releases accepted).
func (c ClientCertMode) String() string {
	switch c {
	case ClientCertVerifyCA:
		return "verify-ca"
	case ClientCertVerifyFull:
		return "verify-full"
	}
	return "no-verify"
}

// ClientName is the clientname option: which part of the client
// certificate is compared with the user name (or fed to the map).
type ClientName int

const (
	// ClientNameCN is the default: the subject's Common Name.
	ClientNameCN ClientName = iota
	// ClientNameDN is the subject's full Distinguished Name in RFC 2253
	// form.
	ClientNameDN
	// ClientNameSANEmail ("SAN-email") is a pgcertgate extension: the
	// rfc822Name entries of subjectAltName. PostgreSQL refuses it.
	ClientNameSANEmail
	// ClientNameSANDNS ("SAN-DNS") is a pgcertgate extension: the dNSName
	// entries of subjectAltName. PostgreSQL refuses it.
	ClientNameSANDNS
	// ClientNameSANURI ("SAN-URI") is a pgcertgate extension: the URI
	// entries of subjectAltName. PostgreSQL refuses it.
	ClientNameSANURI
	// ClientNameSHA256 ("SHA256") is a pgcertgate extension: the leaf's
	// fingerprint, "sha256:" and the lowercase hex SHA-256 of its DER, a
	// pin that the line's map binds to roles. PostgreSQL refuses it.
	ClientNameSHA256
)

var clientNames = [...]string{
	ClientNameCN: "CN", ClientNameDN: "DN", ClientNameSANEmail: "SAN-email",
	ClientNameSANDNS: "SAN-DNS", ClientNameSANURI: "SAN-URI", ClientNameSHA256: "SHA256",
}

// String returns the option value.
func (c ClientName) String() string {
	if c < 0 || int(c) >= len(clientNames) {
		return "invalid"
	}
	return clientNames[c]
}

// Extension reports whether the value is a pgcertgate extension that
// PostgreSQL itself refuses (so `check` can flag the line as not portable).
func (c ClientName) Extension() bool { return c >= ClientNameSANEmail }

// AddressKind says how a host record's address field is matched
// (hba.h IPCompareMethod plus the host-name case).
type AddressKind uint8

const (
	// AddressNone is the zero value: local records have no address.
	AddressNone AddressKind = iota
	// AddressAll is the keyword all.
	AddressAll
	// AddressSameHost is the keyword samehost: any of the server's own
	// addresses.
	AddressSameHost
	// AddressSameNet is the keyword samenet: any address in a subnet the
	// server is directly connected to.
	AddressSameNet
	// AddressIP is an IP address with a mask.
	AddressIP
	// AddressHostName is a host name, or a suffix when it starts with '.'.
	AddressHostName
)

// Address is the address field of a host record.
type Address struct {
	Kind AddressKind
	// IP is the address as written (host bits are kept, as PostgreSQL
	// keeps them; they do not matter for matching).
	IP netip.Addr
	// Mask is the netmask, of IP's family. PostgreSQL accepts any mask
	// given as a separate field, even a non-contiguous one.
	Mask netip.Addr
	// CIDR records that the mask was written as /bits, not as a field.
	CIDR bool
	// Host is the host name for AddressHostName, as written.
	Host string
}

// String returns the canonical spelling: the keyword, the host name,
// address/bits, or "address mask" (two fields) when the mask was written
// separately.
func (a Address) String() string {
	switch a.Kind {
	case AddressAll:
		return "all"
	case AddressSameHost:
		return "samehost"
	case AddressSameNet:
		return "samenet"
	case AddressHostName:
		s := authfile.String{Value: a.Host}
		if a.Host == "all" || a.Host == "samehost" || a.Host == "samenet" {
			// Quoting keeps a host name spelled like a keyword a host name.
			s.Quoted = true
		}
		return s.String()
	case AddressIP:
		if a.CIDR {
			bits, _ := maskBits(a.Mask)
			return authfile.String{Value: a.IP.String() + "/" + strconv.Itoa(bits)}.String()
		}
		return authfile.String{Value: a.IP.String()}.String() + " " + a.Mask.String()
	}
	return ""
}

// Prefix returns the address as a prefix when the mask is contiguous.
func (a Address) Prefix() (netip.Prefix, bool) {
	if a.Kind != AddressIP {
		return netip.Prefix{}, false
	}
	bits, ok := maskBits(a.Mask)
	if !ok {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a.IP.WithZone(""), bits), true
}

// maskBits returns the prefix length of a contiguous mask.
func maskBits(m netip.Addr) (int, bool) {
	b := m.AsSlice()
	bits := 0
	seenZero := false
	for _, x := range b {
		for i := 7; i >= 0; i-- {
			if x&(1<<i) != 0 {
				if seenZero {
					return 0, false
				}
				bits++
			} else {
				seenZero = true
			}
		}
	}
	return bits, true
}

// Contains reports whether ip lies in the address range: the same family
// and (ip XOR addr) AND mask == 0 (hba.c check_ip, ip.c
// pg_range_sockaddr). An IPv4 range never contains an IPv6 address, an
// IPv4-mapped one included.
func (a Address) Contains(ip netip.Addr) bool {
	if a.Kind != AddressIP {
		return false
	}
	return rangeContains(a.IP, a.Mask, ip)
}

func rangeContains(addr, mask, ip netip.Addr) bool {
	if addr.Is4() != ip.Is4() {
		return false
	}
	x, m, c := addr.AsSlice(), mask.AsSlice(), ip.AsSlice()
	if len(x) != len(c) || len(m) != len(c) {
		return false
	}
	for i := range c {
		if (c[i]^x[i])&m[i] != 0 {
			return false
		}
	}
	return true
}

// Option is one name=value option of a record, as written.
type Option struct {
	Name  string
	Value string
}

// String returns name=value, quoted where the tokenizer needs it.
func (o Option) String() string {
	if authfile.IsPlain(o.Value) || o.Value == "" {
		return authfile.String{Value: o.Name + "=" + o.Value}.String()
	}
	return authfile.String{Value: o.Name}.String() + "=" + authfile.Quote(o.Value)
}

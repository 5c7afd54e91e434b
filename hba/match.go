package hba

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// RoleChecker answers role-membership questions for +role, samerole and
// samegroup. IsMember reports whether user is directly or indirectly a
// member of role. It must NOT count superuser status (PostgreSQL's
// is_member_of_role_nosuper), and must answer false, not an error, when
// either role does not exist.
type RoleChecker interface {
	IsMember(ctx context.Context, user, role string) (bool, error)
}

// Resolver does the DNS lookups of host-name records. LookupAddr returns
// the names of an address (reverse lookup; PostgreSQL uses the first one,
// and a trailing dot is ignored); LookupHost the addresses of a name.
// *net.Resolver satisfies it.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Env is what matching needs from outside the package. Every field may be
// nil: a nil Roles makes a record that needs membership an error, a nil
// Resolver means host-name records never match, and a nil LocalAddrs means
// samehost and samenet never match.
type Env struct {
	Roles    RoleChecker
	Resolver Resolver
	// LocalAddrs lists the server's interface addresses with their
	// netmasks (PostgreSQL's pg_foreach_ifaddr).
	LocalAddrs func() ([]netip.Prefix, error)
}

// Request describes a connection attempt. The caller has already applied
// PostgreSQL's startup rules: names truncated to 63 bytes, and an empty
// database defaulted to the user name.
type Request struct {
	// Addr is the client address exactly as PostgreSQL would see it.
	// PostgreSQL binds IPv6 sockets IPV6_V6ONLY, so an IPv4 client always
	// arrives as IPv4: callers listening on a dual-stack socket must pass
	// Addr.Unmap(). An IPv4-mapped IPv6 address is matched as IPv6 and
	// never by an IPv4 record.
	Addr netip.Addr
	// Local is set for a connection over a Unix-domain socket: only
	// "local" records match it, and Addr, SSL and GSS are ignored.
	Local bool
	// SSL and GSS report the transport encryption in use.
	SSL bool
	GSS bool
	// Database and User are the requested names.
	Database, User string
	// Replication is true for a physical replication connection
	// (replication=true), which only the replication keyword matches. A
	// logical one (replication=database) is an ordinary connection here.
	Replication bool
}

// Attempt is one record tried by Explain.
type Attempt struct {
	Entry   *Entry
	Matched bool
	// Reason says why the record did not match; "" when it did.
	Reason string
}

// Match returns the first record that matches req (hba.c check_hba), or
// nil when none does: PostgreSQL's implicit reject. An error means the
// decision could not be made (a RoleChecker failure, a cancelled context);
// the connection must then be refused.
func (c *Conf) Match(ctx context.Context, req Request, env Env) (*Entry, error) {
	e, _, err := c.match(ctx, req, env, false)
	return e, err
}

// Explain makes the same decision as Match and also returns every record
// tried, with the reason each one did not match.
func (c *Conf) Explain(ctx context.Context, req Request, env Env) (*Entry, []Attempt, error) {
	return c.match(ctx, req, env, true)
}

// matcher holds the per-attempt state PostgreSQL keeps in its Port: the
// reverse lookup result and the forward confirmation are done at most once
// per connection, and so are membership checks here.
type matcher struct {
	req   Request
	env   Env
	trace bool

	members map[string]bool

	hostLooked  bool
	hostName    string
	hostErr     error
	hostResolv  int // 0 unknown, +1 confirmed, -1 forward lookup did not confirm, -2 lookup failed
	localLooked bool
	local       []netip.Prefix
	localErr    error
}

func (c *Conf) match(ctx context.Context, req Request, env Env, trace bool) (*Entry, []Attempt, error) {
	m := &matcher{req: req, env: env, trace: trace}
	var attempts []Attempt
	for _, e := range c.Entries {
		ok, reason, err := m.check(ctx, e)
		if err != nil {
			return nil, attempts, err
		}
		if trace {
			attempts = append(attempts, Attempt{Entry: e, Matched: ok, Reason: reason})
		}
		if ok {
			return e, attempts, nil
		}
	}
	return nil, attempts, nil
}

// why formats a reason only when tracing, so Match does not pay for it.
func (m *matcher) why(format string, args ...any) string {
	if !m.trace {
		return "no match"
	}
	return fmt.Sprintf(format, args...)
}

// check mirrors the loop body of check_hba: connection type, SSL and GSS
// state, address, database, then user.
func (m *matcher) check(ctx context.Context, e *Entry) (bool, string, error) {
	if m.req.Local {
		// A Unix-domain socket has no address and no encryption: the
		// connection type alone decides, then database and role.
		if e.ConnType != ConnLocal {
			return false, m.why("connection type %s does not match a Unix-domain socket connection", e.ConnType), nil
		}
		return m.checkNames(ctx, e)
	}
	if e.ConnType == ConnLocal {
		return false, m.why(`connection type "local" matches only Unix-domain socket connections`), nil
	}
	if m.req.SSL && e.ConnType == ConnHostNoSSL {
		return false, m.why("connection type hostnossl does not match an SSL connection"), nil
	}
	if !m.req.SSL && e.ConnType == ConnHostSSL {
		return false, m.why("connection type hostssl does not match a non-SSL connection"), nil
	}
	if m.req.GSS && e.ConnType == ConnHostNoGSS {
		return false, m.why("connection type hostnogssenc does not match a GSS-encrypted connection"), nil
	}
	if !m.req.GSS && e.ConnType == ConnHostGSS {
		return false, m.why("connection type hostgssenc does not match a connection without GSS encryption"), nil
	}
	if ok, reason, err := m.checkAddress(ctx, e.Address); !ok || err != nil {
		return false, reason, err
	}
	return m.checkNames(ctx, e)
}

// checkNames is check_hba's database and role checks, the same for every
// connection type.
func (m *matcher) checkNames(ctx context.Context, e *Entry) (bool, string, error) {
	if ok, reason, err := m.checkDB(ctx, e); !ok || err != nil {
		return false, reason, err
	}
	if ok, reason, err := m.checkRole(ctx, e); !ok || err != nil {
		return false, reason, err
	}
	return true, "", nil
}

func (m *matcher) checkAddress(ctx context.Context, a Address) (bool, string, error) {
	client := m.req.Addr.WithZone("")
	switch a.Kind {
	case AddressAll:
		return true, "", nil
	case AddressIP:
		if a.Contains(client) {
			return true, "", nil
		}
		if a.IP.Is4() != client.Is4() {
			return false, m.why("client address %s is not in %s (address families differ)", client, a), nil
		}
		return false, m.why("client address %s is not in %s", client, a), nil
	case AddressSameHost, AddressSameNet:
		return m.checkSameHostOrNet(a.Kind, client)
	case AddressHostName:
		return m.checkHostname(ctx, a.Host, client)
	}
	return false, m.why("record has no address"), nil
}

// checkSameHostOrNet mirrors hba.c check_same_host_or_net. An interface
// enumeration failure is a non-match, as in PostgreSQL (which logs it).
func (m *matcher) checkSameHostOrNet(kind AddressKind, client netip.Addr) (bool, string, error) {
	word := "samehost"
	if kind == AddressSameNet {
		word = "samenet"
	}
	if m.env.LocalAddrs == nil {
		return false, m.why("%s cannot be checked: no list of local addresses", word), nil
	}
	if !m.localLooked {
		m.localLooked = true
		m.local, m.localErr = m.env.LocalAddrs()
	}
	if m.localErr != nil {
		return false, m.why("error enumerating network interfaces: %v", m.localErr), nil
	}
	for _, p := range m.local {
		if !p.IsValid() {
			continue
		}
		addr := p.Addr().WithZone("")
		bits := addr.BitLen()
		if kind == AddressSameNet {
			bits = p.Bits()
		}
		if rangeContains(addr, cidrMask(addr.Is4(), bits), client) {
			return true, "", nil
		}
	}
	if kind == AddressSameHost {
		return false, m.why("client address %s is not an address of this host", client), nil
	}
	return false, m.why("client address %s is not in a subnet this host is connected to", client), nil
}

// hostnameMatch mirrors hba.c hostname_match: a pattern starting with '.'
// is a suffix; the comparison ignores ASCII case (pg_strcasecmp).
func hostnameMatch(pattern, actual string) bool {
	if strings.HasPrefix(pattern, ".") {
		if len(actual) < len(pattern) {
			return false
		}
		return asciiEqualFold(pattern, actual[len(actual)-len(pattern):])
	}
	return asciiEqualFold(pattern, actual)
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// checkHostname mirrors hba.c check_hostname: one reverse lookup per
// connection (a name is required), the pattern compared with it, then one
// forward lookup that must return the client address. Lookup failures are
// non-matches, as in PostgreSQL; only a cancelled context is an error.
func (m *matcher) checkHostname(ctx context.Context, pattern string, client netip.Addr) (bool, string, error) {
	if m.env.Resolver == nil {
		return false, m.why("host name %s cannot be checked: no resolver", pgQuote(pattern)), nil
	}
	if m.hostResolv < 0 {
		if m.hostResolv == -2 {
			return false, m.why("client host name lookup failed: %v", m.hostErr), nil
		}
		return false, m.why("client host name %s does not resolve back to %s", pgQuote(m.hostName), client), nil
	}
	if !m.hostLooked {
		m.hostLooked = true
		names, err := m.env.Resolver.LookupAddr(ctx, client.String())
		if err == nil && len(names) == 0 {
			err = errors.New("no host name for address")
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return false, "", cerr
			}
			m.hostResolv, m.hostErr = -2, err
			return false, m.why("reverse lookup of %s failed: %v", client, err), nil
		}
		m.hostName = strings.TrimSuffix(names[0], ".")
	}
	if !hostnameMatch(pattern, m.hostName) {
		return false, m.why("client host name %s does not match %s", pgQuote(m.hostName), pgQuote(pattern)), nil
	}
	if m.hostResolv == +1 {
		return true, "", nil
	}
	addrs, err := m.env.Resolver.LookupHost(ctx, m.hostName)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return false, "", cerr
		}
		m.hostResolv, m.hostErr = -2, err
		return false, m.why("forward lookup of %s failed: %v", pgQuote(m.hostName), err), nil
	}
	for _, s := range addrs {
		a, perr := netip.ParseAddr(s)
		if perr != nil {
			continue
		}
		a = a.WithZone("")
		if a.Is4() == client.Is4() && a == client {
			m.hostResolv = +1
			return true, "", nil
		}
	}
	m.hostResolv = -1
	return false, m.why("client host name %s does not resolve back to %s", pgQuote(m.hostName), client), nil
}

// isMember mirrors hba.c is_member, caching answers for the attempt.
func (m *matcher) isMember(ctx context.Context, role string) (bool, error) {
	if role == "" {
		return false, nil
	}
	if v, ok := m.members[role]; ok {
		return v, nil
	}
	if m.env.Roles == nil {
		return false, fmt.Errorf("hba: role membership of %q in %q is needed, but no RoleChecker is configured", m.req.User, role)
	}
	v, err := m.env.Roles.IsMember(ctx, m.req.User, role)
	if err != nil {
		return false, err
	}
	if m.members == nil {
		m.members = make(map[string]bool)
	}
	m.members[role] = v
	return v, nil
}

// checkDB mirrors hba.c check_db.
func (m *matcher) checkDB(ctx context.Context, e *Entry) (bool, string, error) {
	db, user := m.req.Database, m.req.User
	for i, tok := range e.Database {
		switch {
		case m.req.Replication:
			// Physical walsenders match only the replication keyword.
			if tok.IsKeyword("replication") {
				return true, "", nil
			}
		case tok.IsKeyword("all"):
			return true, "", nil
		case tok.IsKeyword("sameuser"):
			if db == user {
				return true, "", nil
			}
		case tok.IsKeyword("samegroup"), tok.IsKeyword("samerole"):
			ok, err := m.isMember(ctx, db)
			if err != nil {
				return false, "", err
			}
			if ok {
				return true, "", nil
			}
		case tok.IsKeyword("replication"):
			// Never matches a non-walsender connection.
		case e.dbRegexps != nil && e.dbRegexps[i] != nil:
			// regexec_auth_token: unanchored, one character per byte
			// (SQL_ASCII, C collation), whatever the name's encoding.
			if e.dbRegexps[i].MatchString(db) {
				return true, "", nil
			}
		case tok.Value == db:
			return true, "", nil
		}
	}
	if m.req.Replication {
		return false, m.why("a physical replication connection matches only the replication keyword, not [%s]", authfile.Field(e.Database)), nil
	}
	for _, tok := range e.Database {
		if tok.IsKeyword("replication") {
			// Otherwise `database "replication" not in [replication]`
			// would puzzle the reader of explain.
			return false, m.why("database %s not in [%s] (the replication keyword matches only physical replication connections)", pgQuote(db), authfile.Field(e.Database)), nil
		}
	}
	return false, m.why("database %s not in [%s]", pgQuote(db), authfile.Field(e.Database)), nil
}

// checkRole mirrors hba.c check_role (case-sensitive).
func (m *matcher) checkRole(ctx context.Context, e *Entry) (bool, string, error) {
	user := m.req.User
	for i, tok := range e.User {
		switch {
		case isMemberCheck(tok):
			ok, err := m.isMember(ctx, tok.Value[1:])
			if err != nil {
				return false, "", err
			}
			if ok {
				return true, "", nil
			}
		case tok.IsKeyword("all"):
			return true, "", nil
		case e.userRegexps != nil && e.userRegexps[i] != nil:
			// regexec_auth_token, as for the database.
			if e.userRegexps[i].MatchString(user) {
				return true, "", nil
			}
		case tok.Value == user:
			return true, "", nil
		}
	}
	return false, m.why("user %s not in [%s]", pgQuote(user), authfile.Field(e.User)), nil
}

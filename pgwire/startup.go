package pgwire

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Codes of the special startup packets (PostgreSQL's pqcomm.h).
const (
	cancelRequestCode = 80877102
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104

	// maxStartupPacketLen bounds a startup packet body, as PostgreSQL's
	// MAX_STARTUP_PACKET_LENGTH does; the length is checked before any
	// allocation.
	maxStartupPacketLen = 10000
	// namedatalen is PostgreSQL's NAMEDATALEN: names are cut to 63 bytes.
	namedatalen = 64

	// latestMinor is the newest protocol 3 minor version pgcertgate speaks
	// to clients. 3.2 changes only the cancel key length, and the proxy
	// owns the client-side key, so it is safe whatever the backend speaks.
	latestMinor = 2

	tlsHandshakeRecord = 0x16
	alpnPostgreSQL     = "postgresql"
)

// errSilentClose ends a connection without a message, as PostgreSQL does
// for malformed length words and for cancel requests (COMMERROR only).
var errSilentClose = errors.New("connection closed without a reply")

// replicationMode is the value of the replication startup parameter.
type replicationMode int

const (
	replicationNone     replicationMode = iota
	replicationPhysical                 // replication=true: a physical walsender
	replicationLogical                  // replication=database: a logical walsender
)

func (m replicationMode) String() string {
	switch m {
	case replicationPhysical:
		return "physical"
	case replicationLogical:
		return "logical"
	}
	return "none"
}

// startupInfo is what a client asked for in its StartupMessage.
type startupInfo struct {
	minor       uint16 // requested protocol 3 minor version
	user        string
	database    string
	replication replicationMode
	// params are the parameters to pass on to the backend, in client
	// order: everything but user, database and _pq_.* options.
	params [][2]string
	// pqOptions are the _pq_.* protocol options, none of which we know.
	pqOptions []string
}

// negotiatedMinor is the protocol minor version the session runs with.
func (s *startupInfo) negotiatedMinor() uint16 { return min(s.minor, latestMinor) }

// param returns a startup parameter's value.
func (s *startupInfo) param(name string) string {
	for _, p := range s.params {
		if p[0] == name {
			return p[1]
		}
	}
	return ""
}

// startupReader reads startup packets. It buffers like PostgreSQL's
// pq_getbytes does, which is what makes the CVE-2021-23214 check possible:
// anything buffered when the client asks for TLS arrived in plaintext and
// must not be read as if it came through the encrypted channel.
type startupReader struct {
	*bufio.Reader
}

func newStartupReader(c net.Conn) startupReader {
	return startupReader{bufio.NewReaderSize(c, 8192)}
}

// readPacket reads one length-prefixed startup packet body, mirroring
// ProcessStartupPacket's checks. A length outside 4..10000 or a packet cut
// short ends the connection silently, as in PostgreSQL.
func (r startupReader) readPacket() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, errSilentClose
	}
	n := int64(int32(binary.BigEndian.Uint32(hdr[:]))) - 4
	if n < 4 || n > maxStartupPacketLen {
		return nil, errSilentClose
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, errSilentClose
	}
	return body, nil
}

// cancelRequest is a parsed CancelRequest.
type cancelRequest struct {
	pid uint32
	key []byte
}

// parseCancel reads a CancelRequest body: 4-byte keys for protocol 3.0 and
// 1–256 byte keys for 3.2. Anything else is dropped, as PostgreSQL does.
func parseCancel(body []byte) (cancelRequest, bool) {
	if len(body) < 9 || len(body) > 8+256 {
		return cancelRequest{}, false
	}
	return cancelRequest{pid: binary.BigEndian.Uint32(body[4:8]), key: body[8:]}, true
}

// parseStartup parses a StartupMessage body whose protocol word is already
// known to be 3.x, mirroring ProcessStartupPacket.
func parseStartup(body []byte) (*startupInfo, error) {
	proto := binary.BigEndian.Uint32(body)
	s := &startupInfo{minor: uint16(proto)}
	rest := body[4:]
	terminated := false
	for len(rest) > 0 {
		name, after, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			break
		}
		if len(name) == 0 {
			terminated = len(after) == 0
			break
		}
		value, after2, ok := bytes.Cut(after, []byte{0})
		if !ok {
			break
		}
		rest = after2
		n, v := string(name), string(value)
		switch {
		case n == "user":
			s.user = v
		case n == "database":
			s.database = v
		case n == "replication":
			mode, err := parseReplication(v)
			if err != nil {
				return nil, err
			}
			s.replication = mode
			s.params = append(s.params, [2]string{n, v})
		case strings.HasPrefix(n, "_pq_."):
			s.pqOptions = append(s.pqOptions, n)
		default:
			s.params = append(s.params, [2]string{n, v})
		}
	}
	if !terminated {
		return nil, fatal(codeProtocolViolation, "bad_startup_packet", "invalid startup packet layout: expected terminator as last byte")
	}
	return s, nil
}

// normalize applies what ProcessStartupPacket does after it has answered
// with NegotiateProtocolVersion: a user is required, the database defaults
// to the user (a physical walsender has none), and both are cut to 63
// bytes. Explain runs it too, so it cannot drift from live connections.
func (s *startupInfo) normalize() error {
	if s.user == "" {
		return fatal(codeInvalidAuthorization, "bad_startup_packet", "no PostgreSQL user name specified in startup packet")
	}
	if s.database == "" {
		s.database = s.user
	}
	if s.replication == replicationPhysical {
		// A physical walsender is connected to no database.
		s.database = ""
	}
	s.user = truncateName(s.user)
	s.database = truncateName(s.database)
	return nil
}

// parseReplication reads the replication startup parameter: a boolean or
// "database", as ProcessStartupPacket does.
func parseReplication(v string) (replicationMode, error) {
	if v == "database" {
		return replicationLogical, nil
	}
	b, ok := parseBool(v)
	if !ok {
		e := fatal(codeInvalidParameterValue, "bad_startup_packet", "invalid value for parameter \"%s\": \"%s\"", "replication", v)
		e.Hint = `Valid values are: "false", 0, "true", 1, "database".`
		return replicationNone, e
	}
	if b {
		return replicationPhysical, nil
	}
	return replicationNone, nil
}

// truncateName cuts a name to NAMEDATALEN-1 bytes, as PostgreSQL does in
// ProcessStartupPacket (byte-wise, even inside a multi-byte character).
func truncateName(s string) string {
	if len(s) >= namedatalen {
		return s[:namedatalen-1]
	}
	return s
}

// parseBool mirrors PostgreSQL's parse_bool: case-insensitive unique
// prefixes of true/false/yes/no, on/off (at least two letters), 1/0.
func parseBool(v string) (bool, bool) {
	// No trimming: parse_bool_with_len refuses " true".
	s := strings.ToLower(v)
	if s == "" {
		return false, false
	}
	prefixOf := func(word string, minLen int) bool { return len(s) >= minLen && strings.HasPrefix(word, s) }
	switch {
	case prefixOf("true", 1), prefixOf("yes", 1), prefixOf("on", 2), s == "1":
		return true, true
	case prefixOf("false", 1), prefixOf("no", 1), prefixOf("off", 2), s == "0":
		return false, true
	}
	return false, false
}

// unsupportedProtocol is PostgreSQL 18's error for a protocol major it does
// not speak (including a second SSLRequest, which reads as 1234.5679).
func unsupportedProtocol(proto uint32) *Error {
	e := fatal(codeFeatureNotSupported, reasonUnsupportedProtoVersion,
		"unsupported frontend protocol %d.%d: server supports 3.0 to 3.%d", proto>>16, proto&0xffff, latestMinor)
	e.Protocol2 = proto>>16 < 3
	return e
}

// negotiateProtocolVersion is sent when the client asked for a newer minor
// version or for _pq_ options, as SendNegotiateProtocolVersion does.
func negotiateProtocolVersion(s *startupInfo) *pgproto3.NegotiateProtocolVersion {
	if s.minor <= latestMinor && len(s.pqOptions) == 0 {
		return nil
	}
	return &pgproto3.NegotiateProtocolVersion{
		NewestMinorProtocol: uint32(3)<<16 | uint32(s.negotiatedMinor()),
		UnrecognizedOptions: s.pqOptions,
	}
}

// tlsVersionName renders a TLS version the way PostgreSQL's ssl_version()
// does.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return "0x" + strconv.FormatUint(uint64(v), 16)
}

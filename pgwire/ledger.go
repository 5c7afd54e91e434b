package pgwire

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pgcertgate/pgcertgate/admin"
	"github.com/pgcertgate/pgcertgate/certauth"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
	"github.com/pgcertgate/pgcertgate/ledger"
)

// codeObjectNotInPrerequisiteState is what a database without the ledger
// gets: the session cannot run there until install-sql has.
const codeObjectNotInPrerequisiteState = "55000"

// serverExt is what the identity ledger and the admin API add to a
// Server.
type serverExt struct {
	// ledger writes the identity ledger; nil unless identity_ledger was
	// on at start.
	ledger *ledger.Ledger
	// logins receives every connection attempt; nil for none.
	logins LoginRecorder
	// live lists the sessions being relayed.
	live liveSessions
	// watch ends sessions whose client certificate is revoked or
	// expires (revsess.go).
	watch *sessionWatch
}

// LoginRecorder receives every connection attempt, as the audit log
// records it (admin.Monitor).
type LoginRecorder interface {
	Record(admin.LoginEvent)
}

// SetLoginRecorder makes r receive every connection attempt. Call it
// before Serve.
func (s *Server) SetLoginRecorder(r LoginRecorder) { s.ext.logins = r }

// newLedger starts the identity ledger's writer when rt turns it on.
func newLedger(rt *config.Runtime, log *slog.Logger) *ledger.Ledger {
	b := rt.Config.Backend
	if !b.IdentityLedger {
		return nil
	}
	l := ledger.New(ledger.Options{Backend: rt.Backend, User: b.LedgerUser, Log: log})
	l.Start()
	return l
}

// sessionMeta is what a session keeps of its authentication once the
// verified certificate itself is dropped: for its ledger row and the
// admin API.
type sessionMeta struct {
	identity    string
	fingerprint string
	// reused: the backend was kept from an earlier session.
	reused bool
	// ledger is the session's row; nil without the ledger.
	ledger *ledger.Entry
	// certs is what rechecks of the client chain need (revsess.go); nil
	// without a verified client certificate.
	certs *sessionCerts
}

// recordLedger writes the session's ledger row, after the backend has
// accepted the session and before the client is greeted, so that the
// client's first statement already finds it. A session whose row cannot
// be written does not run: the backend is closed and the client refused.
// Replication connections are exempt.
func (c *clientConn) recordLedger(ctx context.Context, s *session, si *startupInfo, entry *hba.Entry) error {
	// A kept backend's session carries the previous client's meta.
	s.meta = sessionMeta{identity: c.authIdentity, reused: s.meta.reused}
	if c.peer != nil {
		s.meta.fingerprint = c.peer.Fingerprint()
		s.meta.certs = newSessionCerts(c.peer)
	}
	l := c.srv.ext.ledger
	if l == nil || si.replication != replicationNone {
		return nil
	}
	row := ledger.Row{
		PID:        s.cancel.pid,
		Role:       si.user,
		Identity:   c.authIdentity,
		ClientAddr: c.addr,
		AuthTime:   time.Now(),
		Opened:     s.created,
	}
	if entry != nil {
		row.HBALine = entry.Location()
	}
	if c.peer != nil {
		row.CertSHA256, row.Subject, row.Issuer = c.peer.Fingerprint(), c.peer.Subject, c.peer.Issuer
	}
	began := time.Now()
	e, err := l.Record(ctx, si.database, row)
	c.note(slog.Duration("ledger_write", time.Since(began)))
	if err != nil {
		// The backend has sent its ReadyForQuery and sits between
		// messages.
		terminate(s.backend)
		if ni, ok := errors.AsType[*ledger.ErrNotInstalled](err); ok {
			pe := fatal(codeObjectNotInPrerequisiteState, "ledger_not_installed", "pgcertgate's identity ledger is not installed in database \"%s\"", si.database)
			pe.Hint = `Run the SQL that "pgcertgate install-sql" prints in this database.`
			pe.LogDetail = ni.Error()
			return pe
		}
		pe := fatal(pgerr.CodeCannotConnectNow, "ledger_write_failed", "pgcertgate could not record this session in its identity ledger")
		pe.LogDetail = err.Error()
		return pe
	}
	s.meta.ledger = e
	return nil
}

// startLive registers a relayed session for the admin API and for stops.
func (c *clientConn) startLive(s *session, ctl *sessionControl) *liveSession {
	ls := &liveSession{
		info: admin.SessionInfo{
			ID: c.id, User: c.user, Database: c.database, Identity: s.meta.identity,
			Client: c.clientHost(), Start: time.Now(), BackendPID: s.cancel.pid, Reused: s.meta.reused,
		},
		fingerprint: s.meta.fingerprint,
		certs:       s.meta.certs,
		ctl:         ctl,
	}
	c.srv.ext.live.add(ls)
	c.srv.ext.watch.add(ls, c.crlGen, c.state)
	return ls
}

// endLive unregisters a session and releases its ledger row; Terminate
// waits on ended.
func (c *clientConn) endLive(s *session, ls *liveSession) {
	c.srv.ext.live.remove(ls.info.ID)
	c.srv.ext.watch.remove(ls)
	s.meta.ledger.Release()
	close(ls.ctl.ended)
}

// observeLogin hands one connection attempt to the login recorder. attrs
// are the attempt's audit event: the recorder sees what the log says.
func (c *clientConn) observeLogin(attrs []slog.Attr, elapsed time.Duration) {
	r := c.srv.ext.logins
	if r == nil {
		return
	}
	for _, a := range attrs {
		if a.Key == "reason" && a.Value.String() == "startup_closed" {
			// A socket closed before any startup packet (a load
			// balancer's health check) is no login attempt, and must
			// not push real ones out of the history.
			return
		}
	}
	e := admin.LoginEvent{Time: c.start, Client: c.clientHost(), User: c.user, Database: c.database, Duration: elapsed}
	for _, a := range attrs {
		v := a.Value.String()
		switch a.Key {
		case "hba_line":
			e.HBALine = v
		case "cert_identity":
			// The last name tried; an accepted attempt names the one
			// accepted below.
			e.Identity = v
		case "cert_sha256":
			e.Fingerprint = v
		case "verdict":
			e.Verdict = v
		case "reason":
			e.Reason = v
		case "sqlstate":
			e.SQLSTATE = v
		case "message":
			e.Message = v
		}
	}
	if e.Verdict == verdictAccept && c.authIdentity != "" {
		e.Identity = c.authIdentity
	}
	switch {
	case c.peer != nil && c.peer.Verified:
		e.Cert = certificateSeen(c.peer)
	case e.Fingerprint != "":
		// Presented, and refused by verification (or not yet
		// verified when the attempt failed): counted, never kept.
		e.CertUnverified = true
	}
	r.Record(e)
}

// certificateSeen describes a verified certificate for the inventory.
func certificateSeen(p *certauth.Peer) *admin.CertificateSeen {
	leaf := p.Leaf()
	c := &admin.CertificateSeen{
		Fingerprint: p.Fingerprint(),
		Subject:     p.Subject,
		Issuer:      p.Issuer,
		NotBefore:   leaf.NotBefore,
		NotAfter:    leaf.NotAfter,
	}
	for _, k := range []struct {
		prefix string
		names  []string
	}{{"email:", p.SANEmail}, {"DNS:", p.SANDNS}, {"URI:", p.SANURI}} {
		for _, n := range k.names {
			c.SANs = append(c.SANs, k.prefix+n)
		}
	}
	return c
}

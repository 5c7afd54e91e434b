package pgwire

import (
	"cmp"
	"context"

	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/hba"
)

// authenticate asks authz for the live connection's decision and notes it
// for the audit event.
func (c *clientConn) authenticate(ctx context.Context, si *startupInfo) (*hba.Entry, error) {
	req := &authz.Request{
		Addr:        c.addr,
		SSL:         c.ssl,
		Peer:        c.peer,
		Revocation:  c.checkSetRevocation,
		User:        si.user,
		Database:    si.database,
		Replication: si.replication == replicationPhysical,
	}
	if c.local != nil {
		req.Local, req.PeerUID, req.PeerCredErr = true, c.local.uid, c.local.err
	}
	d, err := authz.Authorize(ctx, c.state.snap, req, false)
	c.noteDecision(d)
	// The name authentication accepted: a certificate's, or the OS
	// user of a peer line.
	c.authIdentity = cmp.Or(d.Identity, d.OSUser)
	c.note(d.Attrs()...)
	return d.Entry, err
}

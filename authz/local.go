package authz

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/internal/pgerr"
)

// UserLookup gives the OS user name of a uid, as getpwuid does for
// PostgreSQL. It is the one thing peer authentication needs from outside.
type UserLookup interface {
	LookupUID(uid uint32) (string, error)
}

// ErrUnknownUser is what a UserLookup returns for a uid the user database
// does not know; PostgreSQL logs "user does not exist" for it.
var ErrUnknownUser = errors.New("user does not exist")

// host is the client's host as PostgreSQL names it in its messages.
func (r *Request) host() string { return ClientHost(r.Local, r.Addr) }

// ClientHost names a client as PostgreSQL's messages and log do: its
// address, or "[local]" on a Unix-domain socket.
func ClientHost(local bool, addr netip.Addr) string {
	if local {
		return "[local]"
	}
	return addr.String()
}

// checkPeer is PostgreSQL's auth_peer: the socket peer's uid gives the OS
// user name, which must equal the requested role or pass the line's map.
// Whatever fails, the client gets auth_failed's one message; why it failed
// goes to the log only, as PostgreSQL logs it.
func checkPeer(ctx context.Context, snap *Snapshot, req *Request, d *Decision) error {
	entry := d.Entry
	failed := peerFailed(req)
	if req.PeerCredErr != nil {
		failed.Reason = "peer_no_credentials"
		failed.LogDetail = fmt.Sprintf("could not get peer credentials: %v", req.PeerCredErr)
		return failed
	}
	name, err := lookupUID(snap.Users, req.PeerUID)
	if err != nil {
		failed.Reason = "peer_unknown_uid"
		failed.LogDetail = fmt.Sprintf("could not look up local user ID %d: %v", req.PeerUID, err)
		return failed
	}
	// PostgreSQL records the authenticated identity before the map is
	// checked: the uid has authenticated, whatever the map says next.
	d.OSUser = name
	res, err := snap.Ident.Check(ctx, entry.Map, req.User, name, snap.Env.Roles)
	if err != nil {
		return lookupFailed("evaluating pg_ident.conf", err)
	}
	if res.Matched {
		d.Identity = name
		if entry.Map != "" && res.Entry != nil {
			d.MapLine = fmt.Sprintf("%s:%d", res.Entry.File, res.Entry.Line)
		}
		return nil
	}
	d.MapLog = res.LogMessage
	failed.LogDetail = res.LogMessage
	if entry.Map != "" {
		failed.Reason = "ident_no_match"
	}
	return failed
}

func lookupUID(users UserLookup, uid uint32) (string, error) {
	if users == nil {
		return "", errors.New("no user database")
	}
	name, err := users.LookupUID(uid)
	if err == nil && name == "" {
		// An empty name would pass a map line for any system user.
		err = ErrUnknownUser
	}
	return name, err
}

// peerFailed is auth_failed's message for uaPeer.
func peerFailed(req *Request) *pgerr.Error {
	return pgerr.Fatal(pgerr.CodeInvalidAuthorization, "peer_name_mismatch", "Peer authentication failed for user \"%s\"", req.User)
}

// PeerLine reports whether entry decides with the socket peer's OS user,
// which is then the session's identity (and the key of a reused backend).
func PeerLine(entry *hba.Entry) bool {
	return entry != nil && entry.ConnType == hba.ConnLocal && entry.Method == hba.MethodPeer
}

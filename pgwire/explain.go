package pgwire

import (
	"github.com/pgcertgate/pgcertgate/authz"
	"github.com/pgcertgate/pgcertgate/config"
)

// Explainer gives `pgcertgate explain` what a live connection is decided
// with: the same startup normalisation, and the same authz.Snapshot
// (catalog connection included), so that explain cannot drift from the
// server. The rendering is explain's own.
type Explainer struct{ st *state }

// NewExplainer builds the snapshot a server running rt would use.
func NewExplainer(rt *config.Runtime) *Explainer { return &Explainer{st: newState(rt)} }

// Snapshot is the decision's input from the configuration.
func (e *Explainer) Snapshot() *authz.Snapshot { return e.st.snap }

// Close releases the catalog connections.
func (e *Explainer) Close() {
	if e.st.roles != nil {
		e.st.roles.close()
	}
}

// StartupRequest is a hypothetical startup packet after ProcessStartupPacket's
// rules: names truncated to 63 bytes, the database defaulted to the user
// (none for a physical walsender). Replication is the startup parameter's
// value ("" when absent); Mode is "none", "physical" or "logical". The
// error is the client's, for a packet PostgreSQL refuses.
type StartupRequest struct {
	User, Database string
	Mode           string
	Physical       bool
}

// NormalizeStartup applies the server's startup rules to a hypothetical
// startup packet.
func NormalizeStartup(user, database, replication string) (StartupRequest, error) {
	si := &startupInfo{user: user, database: database}
	if replication != "" {
		mode, err := parseReplication(replication)
		if err != nil {
			return StartupRequest{}, err
		}
		si.replication = mode
	}
	if err := si.normalize(); err != nil {
		return StartupRequest{}, err
	}
	return StartupRequest{User: si.user, Database: si.database, Mode: si.replication.String(), Physical: si.replication == replicationPhysical}, nil
}

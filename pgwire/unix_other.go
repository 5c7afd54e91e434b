//go:build !linux

package pgwire

import (
	"errors"
	"net"
)

// peerCredentials is only implemented with Linux's SO_PEERCRED; elsewhere
// every peer line refuses, as PostgreSQL does where getpeereid is missing.
func peerCredentials(*net.UnixConn) (uid, gid uint32, pid int32, err error) {
	return 0, 0, 0, errors.New("peer authentication is not supported on this platform")
}

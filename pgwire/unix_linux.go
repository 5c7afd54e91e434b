package pgwire

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCredentials reads SO_PEERCRED: the uid, gid and pid of the process
// that connected, as the kernel recorded them at connect (PostgreSQL's
// getpeereid).
func peerCredentials(uc *net.UnixConn) (uid, gid uint32, pid int32, err error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, 0, err
	}
	if credErr != nil {
		return 0, 0, 0, credErr
	}
	return cred.Uid, cred.Gid, cred.Pid, nil
}

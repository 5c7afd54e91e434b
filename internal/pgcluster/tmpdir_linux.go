package pgcluster

import "syscall"

// tmpfsMagic is TMPFS_MAGIC from linux/magic.h.
const tmpfsMagic = 0x01021994

// tempParent returns where Start creates its default Dir: /dev/shm when it
// is a tmpfs with at least 1 GiB free, else "" (os.TempDir).
//
// Creating files is what initdb and the template copy mostly do, and on a
// disk file system that can cost most of a millisecond per file: measured
// on a 2-core VM, initdb took 0.7-1.3 s on ext4 and 0.35 s on tmpfs, and
// copying the template 0.4-0.9 s against 0.05 s. The free-space check keeps
// small container /dev/shm mounts (Docker's default is 64 MB) out of use.
func tempParent() string {
	const shm = "/dev/shm"
	var st syscall.Statfs_t
	if err := syscall.Statfs(shm, &st); err != nil {
		return ""
	}
	if st.Type != tmpfsMagic || uint64(st.Bavail)*uint64(st.Bsize) < 1<<30 {
		return ""
	}
	return shm
}

//go:build !linux

package pgcluster

// tempParent returns "" (os.TempDir) where there is no /dev/shm tmpfs.
func tempParent() string { return "" }

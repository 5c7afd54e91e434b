package testpki

import (
	"errors"
	"fmt"
	"os"
)

// WriteFile writes data to path with exactly mode, whatever the umask:
// PostgreSQL refuses a server key readable by group or others, and libpq
// refuses such a client key, so the mode must not be left to chance.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	if path == "" {
		return errors.New("testpki: WriteFile: empty path")
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("testpki: %w", err)
	}
	// os.WriteFile applies the umask, and leaves an existing file's mode.
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("testpki: %w", err)
	}
	return nil
}

// WriteFiles writes the leaf's certificate followed by its intermediates
// ([Leaf.ChainPEM]) to certPath with mode 0644, and its PKCS#8 key to
// keyPath with mode 0600. Files are owned by the current user; a file meant
// for a server running as another user (see pgcluster) must be chowned.
func (l *Leaf) WriteFiles(certPath, keyPath string) error {
	if err := WriteFile(certPath, l.ChainPEM(), 0o644); err != nil {
		return err
	}
	return WriteFile(keyPath, l.KeyPEM, 0o600)
}

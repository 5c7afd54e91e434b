package config

import (
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// LoadFiles is Load that also returns the files the load read or looked
// for (see Runtime.Files), even when it fails, so that a watcher can follow
// a file that a broken configuration newly includes. files is nil when the
// configuration file itself could not be read or parsed.
func LoadFiles(path string) (rt *Runtime, files []string, err error) {
	cfg, err := ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	read := fileSet{}
	rt, err = build(cfg, read)
	return rt, read.list(cfg), err
}

// fileSet collects the cleaned names of the files and directories a load
// reads or looks for.
type fileSet map[string]bool

func (s fileSet) add(name string) {
	if name != "" {
		s[filepath.Clean(name)] = true
	}
}

// fs is the host file system, noting every file and directory the
// pg_hba.conf and pg_ident.conf tokenizer opens or lists: what their
// @file, include, include_if_exists and include_dir lines reach, missing
// optional ones included, so that creating one is noticed.
func (s fileSet) fs() authfile.FileSystem {
	return recordingFS{FileSystem: authfile.OSFileSystem, seen: s}
}

// list returns, sorted, what the tokenizer reached together with the
// configuration file, pg_hba.conf, pg_ident.conf and the certificate, key,
// CA and CRL files, the peer channel's included. ssl_crl_dir is left
// out: it is read at every verification, so its changes apply without a
// reload.
func (s fileSet) list(cfg *Config) []string {
	all := fileSet{}
	for p := range s {
		all.add(p)
	}
	for _, p := range []string{cfg.Path, cfg.HBAFile, cfg.IdentFile, cfg.SSLCertFile, cfg.SSLKeyFile, cfg.SSLCAFile, cfg.SSLCRLFile,
		cfg.Cluster.PeerSSLCertFile, cfg.Cluster.PeerSSLKeyFile, cfg.Cluster.PeerSSLCAFile} {
		all.add(p)
	}
	out := make([]string, 0, len(all))
	for p := range all {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// recordingFS notes every name read through it in seen.
type recordingFS struct {
	authfile.FileSystem
	seen fileSet
}

func (r recordingFS) ReadFile(name string) ([]byte, error) {
	r.seen.add(name)
	return r.FileSystem.ReadFile(name)
}

func (r recordingFS) ReadDir(name string) ([]fs.DirEntry, error) {
	r.seen.add(name)
	return r.FileSystem.ReadDir(name)
}

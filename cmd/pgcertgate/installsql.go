package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/ledger"
)

// cmdInstallSQL prints the SQL that sets up the identity ledger for the
// configuration's [backend] ledger_user. Only the configuration file is
// read: the SQL is often run by a DBA on another machine, without the
// proxy's certificates.
func cmdInstallSQL(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("install-sql", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil || *path == "" {
		fmt.Fprintln(stderr, "pgcertgate install-sql: --config FILE is required")
		return 2
	}
	cfg, err := config.ReadFile(*path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	if cfg.Backend.LedgerUser == "" {
		fmt.Fprintf(stderr, "%s: backend.ledger_user: required: the role the ledger is installed for\n", *path)
		return 1
	}
	fmt.Fprint(stdout, ledger.InstallSQL(cfg.Backend.LedgerUser))
	return 0
}

package config

import (
	"strings"
	"testing"
)

func TestParseLedgerAndToken(t *testing.T) {
	c, err := Parse("/etc/pgcertgate/pgcertgate.toml", []byte(minimal+"identity_ledger = true\nledger_user = \"pgcertgate_ledger\"\n[admin]\ntoken_file = \"admin.token\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Backend.IdentityLedger || c.Backend.LedgerUser != "pgcertgate_ledger" || c.Admin.TokenFile != "/etc/pgcertgate/admin.token" {
		t.Errorf("parsed %+v %+v", c.Backend, c.Admin)
	}
	_, err = Parse("c.toml", []byte(minimal+"identity_ledger = true\n"))
	if want := "c.toml:7: backend.identity_ledger: needs backend.ledger_user, the role that writes the ledger"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("identity_ledger without ledger_user: %v, want %q", err, want)
	}
}

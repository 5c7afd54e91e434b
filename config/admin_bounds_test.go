package config

import (
	"errors"
	"testing"
)

func TestAdminBounds(t *testing.T) {
	c, err := Parse("c.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.LoginHistorySize != 1000 || c.Admin.CertificateInventorySize != 10000 {
		t.Errorf("defaults: login_history_size %d, certificate_inventory_size %d; want 1000, 10000",
			c.Admin.LoginHistorySize, c.Admin.CertificateInventorySize)
	}

	// minimal is six lines: [admin] is line 7, its first key line 8.
	for _, tc := range []struct {
		name, admin      string
		history, entries int
		err              string
	}{
		{"both set", "login_history_size = 50\ncertificate_inventory_size = 20000\n", 50, 20000, ""},
		{"lowest", "login_history_size = 1\ncertificate_inventory_size = 1\n", 1, 1, ""},
		{"highest", "login_history_size = 100000\ncertificate_inventory_size = 100000\n", 100000, 100000, ""},
		{"history zero", "login_history_size = 0\n", 0, 0,
			"c.toml:8: admin.login_history_size: 0 is outside the valid range 1..100000"},
		{"history negative", "listen_address = \":9930\"\nlogin_history_size = -5\n", 0, 0,
			"c.toml:9: admin.login_history_size: -5 is outside the valid range 1..100000"},
		{"history too large", "login_history_size = 100001\n", 0, 0,
			"c.toml:8: admin.login_history_size: 100001 is outside the valid range 1..100000"},
		{"inventory zero", "certificate_inventory_size = 0\n", 0, 0,
			"c.toml:8: admin.certificate_inventory_size: 0 is outside the valid range 1..100000"},
		{"inventory too large", "certificate_inventory_size = 1_000_000\n", 0, 0,
			"c.toml:8: admin.certificate_inventory_size: 1000000 is outside the valid range 1..100000"},
		{"both bad, in file order", "certificate_inventory_size = -1\nlogin_history_size = 0\n", 0, 0,
			"c.toml:8: admin.certificate_inventory_size: -1 is outside the valid range 1..100000\n" +
				"c.toml:9: admin.login_history_size: 0 is outside the valid range 1..100000"},
		{"a string", "login_history_size = \"1000\"\n", 0, 0,
			"c.toml:8: admin.login_history_size: must be an integer, not a string"},
		{"a float", "certificate_inventory_size = 1e4\n", 0, 0,
			"c.toml:8: admin.certificate_inventory_size: must be an integer, not a float"},
		{"past int64", "login_history_size = 99999999999999999999\n", 0, 0,
			"c.toml:8: admin.login_history_size: 99999999999999999999 is out of range for int64"},
		{"misspelt", "login_history = 10\n", 0, 0,
			"c.toml:8: admin.login_history: unrecognized configuration parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("c.toml", []byte(minimal+"[admin]\n"+tc.admin))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got error %v\nwant %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin.LoginHistorySize != tc.history || c.Admin.CertificateInventorySize != tc.entries {
				t.Errorf("parsed %d, %d; want %d, %d", c.Admin.LoginHistorySize, c.Admin.CertificateInventorySize, tc.history, tc.entries)
			}
		})
	}

	// A range error is a KeyError, so callers can find the key and line.
	_, err = Parse("c.toml", []byte("admin = { login_history_size = 0 }\n"+minimal))
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Line != 1 || ke.Key != "admin.login_history_size" {
		t.Errorf("inline table: %v (%#v), want a KeyError at line 1 for admin.login_history_size", err, ke)
	}
}

package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/admin"
	"github.com/pgcertgate/pgcertgate/config"
)

// TestAdminBoundsWiring checks that [admin] login_history_size and
// certificate_inventory_size reach the monitor at start and on a reload.
func TestAdminBoundsWiring(t *testing.T) {
	if config.DefaultLoginHistorySize != admin.DefaultHistorySize || config.DefaultCertificateInventorySize != admin.DefaultInventorySize {
		t.Errorf("config defaults %d, %d differ from admin's %d, %d", config.DefaultLoginHistorySize, config.DefaultCertificateInventorySize,
			admin.DefaultHistorySize, admin.DefaultInventorySize)
	}
	parse := func(admin string) *config.Runtime {
		t.Helper()
		c, err := config.Parse("c.toml", []byte("hba_file = \"h\"\nssl_cert_file = \"c\"\nssl_key_file = \"k\"\n[backend]\ndsn = \"host=/tmp\"\n[admin]\n"+admin))
		if err != nil {
			t.Fatal(err)
		}
		return &config.Runtime{Config: c}
	}
	if b := admin.NewMonitor(monitorOptions(parse("").Config)).Bounds(); b.HistorySize != 1000 || b.InventorySize != 10000 || b.InventoryBytes != 8<<20 {
		t.Errorf("defaults: %+v", b)
	}

	mon := admin.NewMonitor(monitorOptions(parse("login_history_size = 5\ncertificate_inventory_size = 3\n").Config))
	adm := admin.New(admin.Options{Monitor: mon})
	now := time.Now()
	record := func(from, to int) {
		for i := from; i < to; i++ {
			mon.Record(admin.LoginEvent{Time: now.Add(time.Duration(i) * time.Second), User: fmt.Sprint(i), Verdict: "accept",
				Cert: &admin.CertificateSeen{Fingerprint: fmt.Sprintf("%064x", i), NotAfter: now.Add(time.Hour)}})
		}
	}
	users := func() string {
		var s []string
		for _, e := range mon.Logins(admin.LoginFilter{}) {
			s = append(s, e.User)
		}
		return strings.Join(s, ",")
	}
	record(0, 8)
	if got, _ := mon.Certificates(); users() != "7,6,5,4,3" || len(got) != 3 {
		t.Fatalf("at start: history %s, %d certificates; want 7,6,5,4,3 and 3", users(), len(got))
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reloadAdmin(adm, parse("login_history_size = 2\ncertificate_inventory_size = 2\n"), log)
	if certs, st := mon.Certificates(); users() != "7,6" || len(certs) != 2 || st.MaxEntries != 2 || st.MaxBytes != 2*(8<<20)/10000 {
		t.Errorf("after shrinking: history %s, inventory %+v; want 7,6 and 2 entries", users(), st)
	}
	if !strings.Contains(logs.String(), "admin history and inventory resized") || !strings.Contains(logs.String(), "login_history_size=2") {
		t.Errorf("resize not logged: %s", logs.String())
	}
	logs.Reset()
	reloadAdmin(adm, parse("login_history_size = 2\ncertificate_inventory_size = 2\n"), log)
	if logs.Len() != 0 {
		t.Errorf("an unchanged reload logged: %s", logs.String())
	}
	reloadAdmin(adm, parse(""), log)
	record(8, 10)
	if b := mon.Bounds(); users() != "9,8,7,6" || b.HistorySize != 1000 || b.InventorySize != 10000 {
		t.Errorf("back to the defaults: history %s, bounds %+v", users(), b)
	}
	// Without a monitor there is nothing to resize.
	reloadAdmin(admin.New(admin.Options{}), parse("login_history_size = 2\n"), log)
}

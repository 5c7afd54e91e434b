package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/pgcertgate/pgcertgate/admin"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// adminOptions wires the admin endpoint: metrics, readiness, and with
// [admin] token_file the API and page over the server's live sessions
// and a login monitor that the server feeds.
func adminOptions(rt *config.Runtime, srv *pgwire.Server, log *slog.Logger) (admin.Options, error) {
	mon := admin.NewMonitor(monitorOptions(rt.Config))
	srv.SetLoginRecorder(mon)
	reg := registry(srv)
	reg.MustRegister(mon.Collector())
	o := admin.Options{
		Address: rt.Config.Admin.ListenAddress, Gatherer: reg, Target: srv, Log: log,
		Pprof: rt.Config.Admin.Pprof, Monitor: mon, Sessions: srv,
	}
	if f := rt.Config.Admin.TokenFile; f != "" {
		tok, err := admin.LoadToken(f)
		if err != nil {
			return o, fmt.Errorf("admin.token_file: %w", err)
		}
		o.Token = tok
	}
	return o, nil
}

// monitorOptions bounds the login history and certificate inventory as
// [admin] says; the inventory's byte budget follows its count.
func monitorOptions(c *config.Config) admin.MonitorOptions {
	return admin.MonitorOptions{HistorySize: c.Admin.LoginHistorySize, InventorySize: c.Admin.CertificateInventorySize}
}

// reloadAdmin follows a successful reload: the page's configuration
// files, the history and inventory bounds (resizing keeps the newest),
// and the token, re-read from token_file. A token that fails to load
// keeps the previous one.
func reloadAdmin(adm *admin.Server, rt *config.Runtime, log *slog.Logger) {
	if adm == nil {
		return
	}
	adm.SetConfig(admin.ConfigInfo{Files: rt.Files, LoadedAt: time.Now()})
	if mon := adm.Monitor(); mon != nil {
		old := mon.Bounds()
		mon.Resize(monitorOptions(rt.Config))
		if next := mon.Bounds(); next != old {
			log.Info("admin history and inventory resized",
				slog.Int("login_history_size", next.HistorySize), slog.Int("certificate_inventory_size", next.InventorySize),
				slog.Int("certificate_inventory_bytes", next.InventoryBytes))
		}
	}
	f := rt.Config.Admin.TokenFile
	if f == "" {
		adm.SetToken(nil)
		return
	}
	tok, err := admin.LoadToken(f)
	if err != nil {
		log.Error("admin.token_file: keeping the previous token", slog.String("error", err.Error()))
		return
	}
	adm.SetToken(tok)
}

// Command pgcertgate is a PostgreSQL authentication front end: it accepts
// PostgreSQL clients over TLS, authenticates their certificates with an
// unmodified pg_hba.conf and pg_ident.conf, and relays their sessions to a
// backend PostgreSQL that trusts it.
//
// This file only wires packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pgcertgate/pgcertgate/admin"
	"github.com/pgcertgate/pgcertgate/cmd/pgcertgate/internal/demo"
	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/watch"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

// usage is what help prints. README.md's Commands section shows it
// verbatim, and usage_test.go checks both against the flags each
// subcommand really registers.
const usage = `pgcertgate: a PostgreSQL authentication front end

Usage:
  pgcertgate serve   --config FILE     run the proxy
  pgcertgate check   --config FILE     load and validate everything; print every error as
                                       file:line: message (exit 1 on any error), or the
                                       interpreted rules
  pgcertgate explain --config FILE --user U [--database D] [--address IP] [--ssl|--no-ssl]
                     [--replication[=database]] [--cert client.crt]
                     [--local [--os-user NAME]]
                                       show how pg_hba.conf and pg_ident.conf decide a
                                       connection (--local: over the Unix socket, from
                                       OS user NAME)
  pgcertgate fingerprint [--map NAME] [--user ROLE] FILE...
                                       print each certificate's pg_ident.conf pin line
                                       (sha256:...) for clientname=SHA256
  pgcertgate install-sql --config FILE
                                       print the SQL that sets up the identity ledger for
                                       [backend] ledger_user; run it in each database
  pgcertgate demo    [--dir DIR] [--port N]
                                       throwaway CA, PostgreSQL and proxy; prints a psql line
  pgcertgate version                   print the version
  pgcertgate help                      print this text
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(rest, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "explain":
		return cmdExplain(rest, stdout, stderr)
	case "fingerprint":
		return cmdFingerprint(rest, stdout, stderr)
	case "install-sql":
		return cmdInstallSQL(rest, stdout, stderr)
	case "demo":
		return cmdDemo(rest, stdout, stderr)
	case "version", "--version", "-V":
		fmt.Fprintln(stdout, "pgcertgate", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "pgcertgate: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// printErrors prints every error of a (possibly joined) error on its own
// line. Each already names its file:line.
func printErrors(w io.Writer, err error) {
	for _, e := range flatten(err) {
		fmt.Fprintln(w, e)
	}
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// scrubPGEnv removes PG* variables from the process environment before any
// backend configuration is parsed: pgconn merges them into every
// connection, and the proxy's environment must not leak into client
// sessions (PGOPTIONS, PGAPPNAME, PGTZ) or redirect the backend. It runs
// before any goroutine starts, so changing the environment is safe.
func scrubPGEnv(log *slog.Logger) {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PG") {
			os.Unsetenv(name)
			if log != nil {
				log.Info("ignoring environment variable", slog.String("name", name))
			}
		}
	}
}

// newLogger makes the process logger. The level is a LevelVar so that a
// reload can change log_level; log_format needs a restart.
func newLogger(cfg *config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	setLevel(level, cfg)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

func setLevel(level *slog.LevelVar, cfg *config.Config) {
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.LogLevel))
	level.Set(l)
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "configuration file (TOML)")
}

func cmdServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil || *path == "" {
		fmt.Fprintln(stderr, "pgcertgate serve: --config FILE is required")
		return 2
	}
	// Profiles for make bench (profile.go); read before scrubPGEnv.
	defer startProfiles(stderr)()
	scrubPGEnv(nil)
	rt, err := config.Load(*path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	log, level := newLogger(rt.Config, stderr)
	for _, w := range rt.Warnings {
		log.Warn(w.Error())
	}
	if err := serve(context.Background(), *path, rt, log, level); err != nil {
		log.Error("pgcertgate stopped", slog.String("error", err.Error()))
		return 1
	}
	return 0
}

// serve runs the server until SIGTERM (smart shutdown: fail /readyz, accept
// for drain_delay, then refuse new sessions, let sessions finish until
// shutdown_timeout, then close them) or SIGINT (fast
// shutdown: close everything now; also cuts a smart shutdown short), and
// reloads on SIGHUP and, with watch_files, when a file changes. The admin
// endpoint outlives the drain, so /healthz stays up and /readyz says 503
// while sessions finish.
func serve(ctx context.Context, path string, rt *config.Runtime, log *slog.Logger, level *slog.LevelVar) error {
	srv := pgwire.New(pgwire.Options{Runtime: rt, Logger: log})
	lns, err := srv.Listen(ctx)
	if err != nil {
		return err
	}
	var adm *admin.Server
	if addr := rt.Config.Admin.ListenAddress; addr != "" {
		// The login history and certificate inventory (admin.go in this
		// directory) exist only with the admin endpoint.
		opts, err := adminOptions(rt, srv, log)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return err
		}
		adm = admin.New(opts)
		adm.SetConfig(admin.ConfigInfo{Files: rt.Files, LoadedAt: time.Now()})
		if err := adm.Start(); err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return err
		}
		log.Info("admin endpoint listening", slog.String("address", adm.Addr().String()))
	}
	serveErr := make(chan error, len(lns))
	for _, ln := range lns {
		log.Info("listening", slog.String("address", ln.Addr().String()))
		go func() { serveErr <- srv.Serve(ln) }()
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	fw := newFileWatch(log)
	defer fw.stop()
	fw.apply(rt)

	var (
		stopped     chan error // receives Shutdown's result once a shutdown began
		cancelDrain context.CancelFunc
	)
	shutdown := func(sctx context.Context, cancel context.CancelFunc) {
		stopped, cancelDrain = make(chan error, 1), cancel
		go func() { stopped <- srv.Shutdown(sctx) }()
	}
	for {
		select {
		case err := <-serveErr:
			if err != nil && stopped == nil {
				log.Error("listener failed; closing", slog.String("error", err.Error()))
				sctx, cancel := context.WithCancel(ctx)
				cancel()
				shutdown(sctx, cancel)
			}
		case changed := <-fw.changes:
			log.Info("configuration files changed, reloading", slog.Any("files", changed))
			if next := reload(path, srv, log, level, fw); next != nil {
				reloadAdmin(adm, next, log)
			}
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				log.Info("received SIGHUP, reloading configuration files")
				if next := reload(path, srv, log, level, fw); next != nil {
					reloadAdmin(adm, next, log)
				}
			case sig == syscall.SIGTERM && stopped == nil:
				cfg := srv.Config()
				log.Info("received SIGTERM: smart shutdown: readiness fails now, new sessions are refused once drain_delay has passed, open sessions may finish",
					slog.Duration("drain_delay", cfg.DrainDelay.Duration),
					slog.Duration("shutdown_timeout", cfg.ShutdownTimeout.Duration))
				// Drain fails /readyz first, keeps accepting for
				// drain_delay, and serves cancels until the sessions end
				// (pgwire/drain.go); SIGINT cancels dctx.
				dctx, cancel := context.WithCancel(ctx)
				stopped, cancelDrain = make(chan error, 1), cancel
				go func() { stopped <- srv.Drain(dctx) }()
			case sig == syscall.SIGINT && stopped == nil:
				log.Info("received SIGINT: fast shutdown, closing every connection")
				sctx, cancel := context.WithCancel(ctx)
				cancel()
				shutdown(sctx, cancel)
			case sig == syscall.SIGINT:
				log.Info("received SIGINT during smart shutdown: closing every connection now")
				cancelDrain()
			default:
				log.Info("shutdown already in progress", slog.String("signal", sig.String()))
			}
		case err := <-stopped:
			cancelDrain()
			fw.stop()
			if adm != nil {
				actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if aerr := adm.Shutdown(actx); aerr != nil {
					log.Warn("admin endpoint shutdown", slog.String("error", aerr.Error()))
				}
				cancel()
			}
			log.Info("shutdown complete")
			return ignoreDeadline(err)
		}
	}
}

// registry gathers the server's metrics with the Go runtime's and the
// process's, and a build_info gauge.
func registry(srv *pgwire.Server) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		srv.Metrics(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pgcertgate_build_info",
			Help:        "Always 1; the labels name the running build.",
			ConstLabels: prometheus.Labels{"version": version(), "goversion": runtime.Version()},
		}, func() float64 { return 1 }),
	)
	return reg
}

// ignoreDeadline treats an expired shutdown_timeout as the expected end of
// a graceful shutdown, which has already been logged.
func ignoreDeadline(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// reload builds the new configuration completely and swaps it in; any
// error keeps the old one whole and is logged with its file:line. It
// returns the configuration now in force, nil when it kept the old one.
func reload(path string, srv *pgwire.Server, log *slog.Logger, level *slog.LevelVar, fw *fileWatch) *config.Runtime {
	scrubPGEnv(nil)
	rt, files, err := config.LoadFiles(path)
	if err != nil {
		for _, e := range flatten(err) {
			log.Error("configuration file error", slog.String("error", e.Error()))
		}
		log.Error("configuration files were not reloaded; keeping the previous configuration")
		srv.Metrics().ReloadFailed()
		// Keep watching what the new file names, so that fixing a
		// newly included file is noticed too.
		if files != nil {
			fw.retarget(files)
		}
		return nil
	}
	for _, w := range rt.Warnings {
		log.Warn(w.Error())
	}
	warnRestartOnly(log, srv.Config(), rt.Config)
	srv.Reload(rt)
	setLevel(level, rt.Config)
	fw.apply(rt)
	log.Info("configuration reloaded", slog.Int("hba_rules", len(rt.HBA.Entries)), slog.Int("ident_lines", len(rt.Ident.Entries)))
	return rt
}

// warnRestartOnly logs each setting a reload changed that only a restart
// applies: the server keeps the old value.
func warnRestartOnly(log *slog.Logger, old, next *config.Config) {
	for _, w := range []struct {
		name      string
		old, next any
	}{
		{"listen_addresses", old.ListenAddresses, next.ListenAddresses},
		{"port", old.Port, next.Port},
		{"unix_socket_directories", old.UnixSocketDirectories, next.UnixSocketDirectories},
		{"unix_socket_group", old.UnixSocketGroup, next.UnixSocketGroup},
		{"unix_socket_permissions", old.UnixSocketPermissions, next.UnixSocketPermissions},
		{"max_connections", old.MaxConnections, next.MaxConnections},
		{"max_startup_connections", old.MaxStartupConnections, next.MaxStartupConnections},
		{"log_format", old.LogFormat, next.LogFormat},
		{"relay_event_loops", old.RelayEventLoops, next.RelayEventLoops},
		{"admin.listen_address", old.Admin.ListenAddress, next.Admin.ListenAddress},
		{"admin.pprof", old.Admin.Pprof, next.Admin.Pprof},
		{"backend.identity_ledger", old.Backend.IdentityLedger, next.Backend.IdentityLedger},
		{"backend.ledger_user", old.Backend.LedgerUser, next.Backend.LedgerUser},
	} {
		if w.old != w.next {
			log.Warn("parameter cannot be changed without restarting the server; keeping the old value",
				slog.String("parameter", w.name), slog.Any("old", w.old), slog.Any("new", w.next))
		}
	}
}

// fileWatch runs the watch_files poller, started and stopped as reloads
// turn the setting on and off. Changes arrive on changes, read by serve's
// loop, so reloads from SIGHUP and from the watcher never overlap.
type fileWatch struct {
	log     *slog.Logger
	changes chan []string
	w       *watch.Watcher
	cancel  context.CancelFunc
	done    chan struct{}
}

func newFileWatch(log *slog.Logger) *fileWatch {
	return &fileWatch{log: log, changes: make(chan []string)}
}

// apply follows rt: starts or stops the poller as watch_files says, and
// watches the files rt was loaded from.
func (f *fileWatch) apply(rt *config.Runtime) {
	if !rt.Config.WatchFiles {
		if f.w != nil {
			f.log.Info("watch_files turned off")
			f.stop()
		}
		return
	}
	paths := rt.Files
	if f.w != nil {
		f.w.SetPaths(paths)
		return
	}
	f.w = watch.New(paths, watch.DefaultInterval)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go func() {
		defer close(f.done)
		f.w.Run(ctx, func(changed []string) {
			select {
			case f.changes <- changed:
			case <-ctx.Done():
			}
		})
	}()
	f.log.Info("watching configuration files for changes", slog.Int("files", len(paths)))
}

// retarget watches files, if watching at all: after a reload that
// failed, the configuration in force still decides whether to watch.
func (f *fileWatch) retarget(files []string) {
	if f.w != nil {
		f.w.SetPaths(files)
	}
}

func (f *fileWatch) stop() {
	if f.w == nil {
		return
	}
	f.cancel()
	<-f.done
	f.w = nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil || *path == "" {
		fmt.Fprintln(stderr, "pgcertgate check: --config FILE is required")
		return 2
	}
	scrubPGEnv(nil)
	rt, err := config.Load(*path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	for _, w := range rt.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: OK\n", *path)
	fmt.Fprintf(stdout, "\npg_hba.conf rules (%s):\n", rt.Config.HBAFile)
	if err := printHBARules(stdout, rt.HBA.Entries); err != nil {
		fmt.Fprintln(stderr, "pgcertgate check:", err)
		return 1
	}
	if len(rt.Ident.Entries) > 0 {
		fmt.Fprintf(stdout, "\npg_ident.conf mappings (%s):\n", rt.Config.IdentFile)
		if err := printIdentMappings(stdout, rt.Ident.Entries); err != nil {
			fmt.Fprintln(stderr, "pgcertgate check:", err)
			return 1
		}
	}
	return 0
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "working directory (default: a new temporary directory, removed on exit)")
	port := fs.Int("port", 0, "proxy port (default: a free port)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	scrubPGEnv(nil)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, demo.Options{Dir: *dir, Port: *port, Out: stdout, Log: stderr}); err != nil {
		fmt.Fprintln(stderr, "pgcertgate demo:", err)
		return 1
	}
	return 0
}

// replicationFlag is explain's --replication: alone it means a physical
// walsender (replication=true); --replication=VALUE passes any value of
// the startup parameter, such as "database" for a logical one.
type replicationFlag string

func (r *replicationFlag) String() string { return string(*r) }

func (r *replicationFlag) Set(v string) error {
	*r = replicationFlag(v)
	return nil
}

// IsBoolFlag lets the flag stand alone, like a boolean.
func (r *replicationFlag) IsBoolFlag() bool { return true }

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	user := fs.String("user", "", "requested user name")
	database := fs.String("database", "", "requested database (default: the user name)")
	address := fs.String("address", "127.0.0.1", "client IP address")
	ssl := fs.Bool("ssl", true, "the client uses SSL (--no-ssl or --ssl=false for plaintext)")
	noSSL := fs.Bool("no-ssl", false, "the client does not use SSL")
	var replication replicationFlag
	fs.Var(&replication, "replication", `a physical replication connection; --replication=database for a logical one`)
	cert := fs.String("cert", "", "client certificate PEM file (leaf first, then any intermediates the client sends)")
	local := fs.Bool("local", false, "the client connects over the Unix-domain socket (local lines; no SSL, no address)")
	osUser := fs.String("os-user", "", "with --local: the client's OS user name, as peer authentication would find it")
	if err := fs.Parse(args); err != nil || *path == "" || *user == "" {
		fmt.Fprintln(stderr, "pgcertgate explain: --config FILE and --user U are required")
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pgcertgate explain: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *osUser != "" && !*local {
		fmt.Fprintln(stderr, "pgcertgate explain: --os-user needs --local")
		return 2
	}
	addr, err := netip.ParseAddr(*address)
	if err != nil {
		fmt.Fprintf(stderr, "pgcertgate explain: --address: %v\n", err)
		return 2
	}
	scrubPGEnv(nil)
	rt, err := config.Load(*path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	accepted, err := explain(context.Background(), rt, explainRequest{
		User: *user, Database: *database, Addr: addr, SSL: *ssl && !*noSSL,
		Replication: string(replication), CertFile: *cert,
		Local: *local, OSUser: *osUser,
	}, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "pgcertgate explain:", err)
		return 2
	}
	if !accepted {
		return 1
	}
	return 0
}

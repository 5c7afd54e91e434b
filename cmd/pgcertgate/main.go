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
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/pgcertgate/pgcertgate/config"
	"github.com/pgcertgate/pgcertgate/internal/demo"
	"github.com/pgcertgate/pgcertgate/pgwire"
)

const usage = `pgcertgate: a PostgreSQL authentication front end

Usage:
  pgcertgate serve   --config FILE     run the proxy
  pgcertgate check   --config FILE     load and validate everything, print the interpreted rules
  pgcertgate explain --config FILE --user U --database D --address IP [--ssl|--no-ssl] [--replication] [--cert client.crt]
                                       show how pg_hba.conf and pg_ident.conf decide a connection
  pgcertgate demo    [--dir DIR]       throwaway CA, PostgreSQL and proxy; prints a psql line
  pgcertgate version                   print the version
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

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
	scrubPGEnv(nil)
	rt, err := config.Load(*path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	log := newLogger(rt.Config, stderr)
	for _, w := range rt.Warnings {
		log.Warn(w.Error())
	}
	if err := serve(context.Background(), *path, rt, log); err != nil {
		log.Error("pgcertgate stopped", slog.String("error", err.Error()))
		return 1
	}
	return 0
}

// serve runs the server until SIGTERM (graceful) or SIGINT (fast), and
// reloads on SIGHUP.
func serve(ctx context.Context, path string, rt *config.Runtime, log *slog.Logger) error {
	srv := pgwire.New(rt, log)
	lns, err := srv.Listen(ctx)
	if err != nil {
		return err
	}
	serveErr := make(chan error, len(lns))
	for _, ln := range lns {
		log.Info("listening", slog.String("address", ln.Addr().String()))
		go func() { serveErr <- srv.Serve(ln) }()
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-serveErr:
			if err != nil {
				srv.Close()
				return err
			}
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				reload(path, srv, log)
			case syscall.SIGTERM:
				timeout := rt.Config.ShutdownTimeout.Duration
				log.Info("received SIGTERM: smart shutdown, waiting for sessions to end", slog.Duration("shutdown_timeout", timeout))
				sctx, cancel := context.WithTimeout(ctx, timeout)
				err := srv.Shutdown(sctx)
				cancel()
				log.Info("shutdown complete")
				return ignoreDeadline(err)
			case syscall.SIGINT:
				log.Info("received SIGINT: fast shutdown, closing sessions")
				err := srv.Close()
				log.Info("shutdown complete")
				return err
			}
		}
	}
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
// error keeps the old one whole.
func reload(path string, srv *pgwire.Server, log *slog.Logger) {
	log.Info("received SIGHUP, reloading configuration files")
	scrubPGEnv(nil)
	rt, err := config.Load(path)
	if err != nil {
		for _, e := range flatten(err) {
			log.Error("configuration file error", slog.String("error", e.Error()))
		}
		log.Error("configuration files were not reloaded; keeping the previous configuration")
		return
	}
	for _, w := range rt.Warnings {
		log.Warn(w.Error())
	}
	srv.Reload(rt)
	log.Info("configuration reloaded", slog.Int("hba_rules", len(rt.HBA.Entries)), slog.Int("ident_lines", len(rt.Ident.Entries)))
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
	fmt.Fprintln(stdout, "pg_hba.conf rules:")
	for _, e := range rt.HBA.Entries {
		fmt.Fprintf(stdout, "%4d  %s:%d  %s\n", e.RuleNumber, e.File, e.Line, e)
	}
	if len(rt.Ident.Entries) > 0 {
		fmt.Fprintln(stdout, "pg_ident.conf mappings:")
		for i, e := range rt.Ident.Entries {
			fmt.Fprintf(stdout, "%4d  %s:%d  %s\n", i+1, e.File, e.Line, e)
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

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	user := fs.String("user", "", "requested user name")
	database := fs.String("database", "", "requested database (default: the user name)")
	address := fs.String("address", "127.0.0.1", "client IP address")
	ssl := fs.Bool("ssl", true, "the client uses SSL (--no-ssl or --ssl=false for plaintext)")
	noSSL := fs.Bool("no-ssl", false, "the client does not use SSL")
	replication := fs.String("replication", "", `replication startup parameter: "true" (physical) or "database" (logical)`)
	cert := fs.String("cert", "", "client certificate PEM file (leaf first, then any intermediates the client sends)")
	if err := fs.Parse(args); err != nil || *path == "" || *user == "" {
		fmt.Fprintln(stderr, "pgcertgate explain: --config FILE and --user U are required")
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
	accepted, err := pgwire.Explain(context.Background(), rt, pgwire.ExplainRequest{
		User: *user, Database: *database, Addr: addr, SSL: *ssl && !*noSSL,
		Replication: *replication, CertFile: *cert,
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

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/hba/hbatest"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
	"github.com/pgcertgate/pgcertgate/internal/pgcluster"
)

// The invalid-line cases of hba/testdata/invalid_lines.txt are proved here
// against a real PostgreSQL 15: each case's files are written into a
// running cluster's data directory and the server's own parser is asked
// through pg_hba_file_rules, which re-reads pg_hba.conf from disk on every
// query (no reload needed, so the running server keeps trusting the
// superuser's Unix-socket sessions). pgcertgate's loader reads the very
// same files.

const hbaInvCasesPath = "../hba/testdata/invalid_lines.txt"

// hbaReadInvalidCases reads the cases shared with hba's own unit tests.
func hbaReadInvalidCases(t *testing.T) []hbatest.Case {
	t.Helper()
	cases, err := hbatest.ReadInvalidCases(hbaInvCasesPath)
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

// hbaInvCluster starts one PostgreSQL with ssl=on (without it, every
// hostssl line would carry "hostssl record cannot match because SSL is
// disabled" in pg_hba_file_rules).
func hbaInvCluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	p := newPKI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{
		ListenAddresses: "127.0.0.1",
		HBA:             localTrust,
		Conf:            map[string]string{"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"},
		Files:           map[string][]byte{"server.crt": p.server.CertPEM, "server.key": p.server.KeyPEM},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	if v := c.MajorVersion(); v != 15 {
		t.Fatalf("the pg15 expectations of %s need PostgreSQL 15; this is %d", hbaInvCasesPath, v)
	}
	return c
}

// hbaFileRule is one row of pg_hba_file_rules as far as errors go.
type hbaFileRule struct {
	line     int
	parsed   bool   // type is not null: the line loaded
	hasError bool   // error is not null
	err      string // error text
}

func (r hbaFileRule) String() string {
	switch {
	case r.hasError:
		return fmt.Sprintf("line %d: error %q", r.line, r.err)
	case !r.parsed:
		return fmt.Sprintf("line %d: refused, error column NULL", r.line)
	}
	return fmt.Sprintf("line %d: loaded", r.line)
}

// hbaFileRules asks the server to parse its pg_hba.conf as it is on disk.
func hbaFileRules(t *testing.T, c *pgcluster.Cluster) []hbaFileRule {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := c.Query(ctx, `select line_number, type is not null, error is not null, coalesce(error, '')
		from pg_hba_file_rules order by line_number`)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]hbaFileRule, len(rows))
	for i, r := range rows {
		n, _ := strconv.Atoi(r[0])
		out[i] = hbaFileRule{line: n, parsed: r[1] == "t", hasError: r[2] == "t", err: r[3]}
	}
	return out
}

// hbaInvExpectPG15 returns the pg_hba_file_rules rows (other than loaded
// ones) that a case's pg15 value predicts at line.
func hbaInvExpectPG15(c hbatest.Case, dir string, line int) []hbaFileRule {
	switch c.PG15 {
	case "<accepted>":
		return nil
	case "<null>":
		return []hbaFileRule{{line: line}}
	}
	return []hbaFileRule{{line: line, hasError: true, err: strings.ReplaceAll(c.PG15, "$DIR", dir)}}
}

// hbaProblemRows keeps the rows that are not cleanly loaded lines.
func hbaProblemRows(rows []hbaFileRule) []hbaFileRule {
	var out []hbaFileRule
	for _, r := range rows {
		if r.hasError || !r.parsed {
			out = append(out, r)
		}
	}
	return out
}

func hbaSameRules(a, b []hbaFileRule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hbaFlatten flattens an errors.Join tree.
func hbaFlatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, hbaFlatten(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// TestHBAInvalidLinesAgainstPostgres runs every case of invalid_lines.txt
// through PostgreSQL 15 (pg_hba_file_rules) and through hba.Load on the
// same files.
func TestHBAInvalidLinesAgainstPostgres(t *testing.T) {
	cases := hbaReadInvalidCases(t)
	c := hbaInvCluster(t)
	dir := c.DataDir()
	compared, loaded := 0, 0
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			if err := c.WriteHBA(strings.Join(tc.File, "\n") + "\n"); err != nil {
				t.Fatal(err)
			}
			for name, lines := range tc.Aux {
				if err := c.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Remove(filepath.Join(dir, name)) })
			}

			// PostgreSQL 15.
			if tc.PG15 != "<skip>" {
				if tc.ErrFile != "pg_hba.conf" {
					t.Fatalf("pg15 %q given for an error in %s, which 15 cannot read", tc.PG15, tc.ErrFile)
				}
				got := hbaProblemRows(hbaFileRules(t, c))
				want := hbaInvExpectPG15(tc, dir, tc.Line)
				if !hbaSameRules(got, want) {
					t.Errorf("PostgreSQL 15 pg_hba_file_rules:\n got %v\nwant %v", got, want)
				} else {
					compared++
				}
			}

			// pgcertgate, on the same files.
			conf, err := hba.Load(filepath.Join(dir, "pg_hba.conf"), authfile.ReadOptions{})
			if err == nil || conf != nil {
				t.Fatalf("hba.Load accepted the file: %v", conf)
			}
			errs := hbaFlatten(err)
			if len(errs) != 1 {
				t.Fatalf("hba.Load: %d errors, want 1:\n%v", len(errs), err)
			}
			var he *authfile.Error
			if !errors.As(errs[0], &he) {
				t.Fatalf("hba.Load error %T is not an *authfile.Error: %v", errs[0], errs[0])
			}
			wantFile := filepath.Join(dir, tc.ErrFile)
			wantMsg := strings.ReplaceAll(tc.Err, "$DIR", dir)
			if he.File != wantFile || he.Line != tc.Line || he.Msg != wantMsg {
				t.Errorf("hba.Load:\n got %s:%d: %s\nwant %s:%d: %s", he.File, he.Line, he.Msg, wantFile, tc.Line, wantMsg)
			} else {
				loaded++
			}
		})
	}
	t.Logf("%d cases: %d compared with PostgreSQL %d's pg_hba_file_rules, %d checked through hba.Load on the same files",
		len(cases), compared, c.MajorVersion(), loaded)
	if compared < 40 {
		t.Errorf("only %d cases compared with PostgreSQL; want at least 40", compared)
	}
}

// hbaInvCombined builds one pg_hba.conf out of every case that needs no
// other file: the cases' lines one after another. It returns the text and,
// per case, the line its error is expected at.
func hbaInvCombined(cases []hbatest.Case) (string, []hbatest.Case, []int) {
	var b strings.Builder
	var used []hbatest.Case
	var at []int
	offset := 0
	for _, c := range cases {
		if len(c.Aux) > 0 || c.ErrFile != "pg_hba.conf" || strings.HasPrefix(c.File[0], "include") {
			// Includes would read the combined file itself (or other
			// files); they are covered one by one.
			continue
		}
		for _, l := range c.File {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		used = append(used, c)
		at = append(at, offset+c.Line)
		offset += len(c.File)
	}
	return b.String(), used, at
}

// TestHBAInvalidLinesCombined puts most cases into ONE file: PostgreSQL
// reports every bad line of it, and so must `pgcertgate check`, each as
// file:line: message, in file order, exiting 1.
func TestHBAInvalidLinesCombined(t *testing.T) {
	cases := hbaReadInvalidCases(t)
	text, used, at := hbaInvCombined(cases)
	if len(used) < 40 {
		t.Fatalf("only %d cases fit in the combined file", len(used))
	}

	t.Run("PostgreSQL 15", func(t *testing.T) {
		c := hbaInvCluster(t)
		if err := c.WriteHBA(text); err != nil {
			t.Fatal(err)
		}
		var want []hbaFileRule
		for i, tc := range used {
			if tc.PG15 != "<skip>" {
				want = append(want, hbaInvExpectPG15(tc, c.DataDir(), at[i])...)
			}
		}
		got := hbaProblemRows(hbaFileRules(t, c))
		if !hbaSameRules(got, want) {
			t.Errorf("pg_hba_file_rules of the combined file:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("pgcertgate check", func(t *testing.T) {
		dir := t.TempDir()
		hbaWriteCheckConfig(t, dir, text)
		hbaPath := filepath.Join(dir, "pg_hba.conf")
		var want []string
		for i, tc := range used {
			want = append(want, fmt.Sprintf("%s:%d: %s", hbaPath, at[i], strings.ReplaceAll(tc.Err, "$DIR", dir)))
		}
		stdout, stderr, code := hbaRunBinary(t, "check", "--config", filepath.Join(dir, "pgcertgate.toml"))
		if code != 1 {
			t.Errorf("check exited %d, want 1", code)
		}
		if stdout != "" {
			t.Errorf("check printed to stdout for a broken file:\n%s", stdout)
		}
		got := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("check's errors differ (%d lines, want %d):\n got:\n%s\nwant:\n%s", len(got), len(want), stderr, strings.Join(want, "\n"))
		}
		t.Logf("check reported %d errors of one file, each as file:line: message", len(want))
	})
}

// hbaWriteCheckConfig writes a complete pgcertgate configuration into dir
// (certificates, empty ident file, TOML) with hbaText as pg_hba.conf.
func hbaWriteCheckConfig(t *testing.T, dir, hbaText string) {
	t.Helper()
	p := newPKI(t)
	for name, body := range map[string]string{
		"server.crt":      string(p.server.CertPEM),
		"root.crt":        string(p.root.CertPEM),
		"pg_hba.conf":     hbaText,
		"pg_ident.conf":   "",
		"pgcertgate.toml": hbaCheckTOML,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), p.server.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

const hbaCheckTOML = `hba_file = "pg_hba.conf"
ident_file = "pg_ident.conf"
ssl_cert_file = "server.crt"
ssl_key_file = "server.key"
ssl_ca_file = "root.crt"
[backend]
dsn = "host=/tmp port=5432"
catalog_user = "postgres"
`

// hbaRunBinary runs the pgcertgate binary and returns stdout, stderr and
// the exit code.
func hbaRunBinary(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgcertgateBinary(t), args...)
	cmd.Env = cleanEnv()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

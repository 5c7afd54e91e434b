// Package hbatest reads the shared pg_hba.conf test cases in hba/testdata,
// for hba's unit tests and the integration tests against PostgreSQL.
package hbatest

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Case is one case of hba/testdata/invalid_lines.txt; the format is
// documented at the top of that file.
type Case struct {
	// Name is the case's name, unique enough to name a subtest.
	Name string
	// File holds the physical lines of $DIR/pg_hba.conf; never empty.
	File []string
	// Aux holds the lines of the other files in $DIR (for @file and
	// include), by file name; empty (never nil) when the case has none.
	Aux map[string][]string
	// ErrFile is the file the error is reported in, relative to $DIR:
	// "pg_hba.conf" or one of the Aux names.
	ErrFile string
	// Line is the 1-based line of ErrFile the error is reported at.
	Line int
	// Err is pgcertgate's message (PostgreSQL 18's text), with $DIR
	// standing for the directory holding pg_hba.conf.
	Err string
	// PG15 is PostgreSQL 15's pg_hba_file_rules.error for the line, or one
	// of <null>, <accepted> and <skip> (see the file's header).
	PG15 string
	// Flags are the case's flag words, in file order.
	Flags []string
}

// Has reports whether the case carries flag.
func (c Case) Has(flag string) bool {
	return slices.Contains(c.Flags, flag)
}

// knownFlags are the flag words the file's header documents; any other is
// a typo that would otherwise pass unnoticed.
var knownFlags = []string{"pg15-differs", "pgcertgate-only", "pg18-config"}

// ReadInvalidCases reads the cases of an invalid_lines.txt file. Anything
// malformed (an unknown directive or flag, a directive outside a case, a
// case without an end or without its file, line, error or pg15) is an
// error naming path:line, so that a typo in the file fails the tests that
// read it instead of being skipped.
func ReadInvalidCases(path string) ([]Case, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		cases []Case
		cur   *Case
		start int // line of cur's "case" directive
		n     int
	)
	fail := func(format string, args ...any) ([]Case, error) {
		return nil, fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, args...))
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		text := sc.Text()
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		dir, arg, _ := strings.Cut(text, " ")
		if dir != "case" && cur == nil {
			return fail("%q outside a case", dir)
		}
		switch dir {
		case "case":
			if cur != nil {
				return fail("case %q (line %d) has no end", cur.Name, start)
			}
			cur, start = &Case{Name: arg, Aux: map[string][]string{}}, n
		case "file":
			cur.File = append(cur.File, arg)
		case "aux":
			name, body, _ := strings.Cut(arg, " ")
			cur.Aux[name] = append(cur.Aux[name], body)
		case "line":
			file, num, ok := strings.Cut(arg, ":")
			if !ok {
				file, num = "pg_hba.conf", arg
			}
			line, err := strconv.Atoi(num)
			if err != nil || line < 1 {
				return fail("bad line %q", arg)
			}
			cur.ErrFile, cur.Line = file, line
		case "error":
			cur.Err = arg
		case "pg15":
			cur.PG15 = arg
		case "flag":
			if !slices.Contains(knownFlags, arg) {
				return fail("unknown flag %q", arg)
			}
			cur.Flags = append(cur.Flags, arg)
		case "end":
			if cur.Line == 0 || cur.Err == "" || cur.PG15 == "" || len(cur.File) == 0 {
				return fail("case %q is incomplete", cur.Name)
			}
			cases = append(cases, *cur)
			cur = nil
		default:
			return fail("unknown directive %q", dir)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cur != nil {
		n = start
		return fail("case %q has no end", cur.Name)
	}
	return cases, nil
}

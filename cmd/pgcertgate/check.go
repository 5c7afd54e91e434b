package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pgcertgate/pgcertgate/hba"
	"github.com/pgcertgate/pgcertgate/identmap"
	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// printHBARules prints the interpreted pg_hba.conf rules as a table with
// the columns of PostgreSQL's pg_hba_file_rules view (rule_number,
// file_name, line_number, type, database, user_name, address, netmask,
// auth_method, options), so an operator can compare the two directly.
// Unlike the view, lists keep their quoting (the keyword all and the
// quoted name "all" look different, as they behave differently), and
// options are shown as written.
func printHBARules(w io.Writer, entries []*hba.Entry) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.StripEscape)
	fmt.Fprintln(tw, "rule\tfile\tline\ttype\tdatabase\tuser_name\taddress\tnetmask\tauth_method\toptions")
	for _, e := range entries {
		addr, mask := addressColumns(e)
		opts := make([]string, len(e.Options))
		for i, o := range e.Options {
			opts[i] = o.String()
		}
		row := []string{
			strconv.Itoa(e.RuleNumber), e.File, strconv.Itoa(e.Line), e.ConnType.String(),
			authfile.Field(e.Database).String(), authfile.Field(e.User).String(), addr, mask,
			e.Method.String(), strings.Join(opts, " "),
		}
		fmt.Fprintln(tw, tableRow(row))
	}
	return flushTable(w, tw, &buf)
}

// addressColumns splits a rule's address the way pg_hba_file_rules does:
// an IP address and its netmask, or a keyword or host name and no mask.
func addressColumns(e *hba.Entry) (addr, mask string) {
	a := e.Address
	switch a.Kind {
	case hba.AddressNone:
		return "", ""
	case hba.AddressIP:
		return a.IP.String(), a.Mask.String()
	}
	return a.String(), ""
}

// printIdentMappings prints pg_ident.conf like the pg_ident_file_mappings
// view (map_number, file_name, line_number, map_name, sys_name,
// pg_username), names in pg_ident.conf syntax.
func printIdentMappings(w io.Writer, entries []*identmap.Entry) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.StripEscape)
	fmt.Fprintln(tw, "map\tfile\tline\tmap_name\tsys_name\tpg_username")
	for i, e := range entries {
		row := []string{
			strconv.Itoa(i + 1), e.File, strconv.Itoa(e.Line),
			authfile.String{Value: e.MapName}.String(), e.System.String(), e.User.String(),
		}
		fmt.Fprintln(tw, tableRow(row))
	}
	return flushTable(w, tw, &buf)
}

// flushTable writes the table without the padding tabwriter leaves after
// an empty last column.
func flushTable(w io.Writer, tw *tabwriter.Writer, buf *bytes.Buffer) error {
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// tableRow joins cells with tabs for tabwriter. A cell that itself holds a
// tab (possible inside a quoted token) is escaped so it stays one cell.
func tableRow(cells []string) string {
	for i, c := range cells {
		if strings.ContainsRune(c, '\t') {
			cells[i] = string(tabwriter.Escape) + c + string(tabwriter.Escape)
		}
	}
	return strings.Join(cells, "\t")
}

// Package authfile implements the tokenizer of pg_hba.conf and pg_ident.conf.
//
// It mirrors PostgreSQL 18's src/backend/libpq/hba.c tokenize_auth_file,
// next_token and next_field_expand: both files share it there, and package
// hba and package identmap share it here. It yields tokens with their
// quoting, line numbers and the raw record text; the parsers build entries.
//
// The package does no networking and no logging. File access goes through
// FileSystem.
package authfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// String is one token of an authentication file. Quoted records whether a
// double quote appeared before the token's first character, as hba.c's
// AuthToken.quoted does: "all" (quoted) is a name, all (unquoted) the
// keyword. Note that, exactly as in PostgreSQL, a"ll" is *not* quoted.
type String struct {
	Value  string
	Quoted bool
}

// IsKeyword reports whether s is the unquoted keyword kw (hba.c
// token_is_keyword).
func (s String) IsKeyword(kw string) bool { return !s.Quoted && s.Value == kw }

// String returns the token as it can be written back into a file so that
// next_token reads the same Value and Quoted flag again. Plain tokens are
// written bare; a quoted token is wrapped in double quotes with "" for a
// literal quote; an unquoted token that holds characters the tokenizer treats
// specially keeps its first byte bare and quotes the rest (+"my group"),
// because a quote before the first byte would make it a quoted token.
func (s String) String() string {
	v := s.Value
	if !s.Quoted {
		if IsPlain(v) {
			return v
		}
		if v != "" && !isSpecialByte(v[0]) && v[0] != '@' {
			return v[:1] + Quote(v[1:])
		}
	}
	return Quote(v)
}

// Quote wraps v in double quotes, doubling embedded quotes, so that it
// reads back as the quoted token v.
func Quote(v string) string {
	return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
}

// isSpecialByte reports the bytes next_token does not copy verbatim outside
// quotes: blanks, the comma separator, the comment start, the quote itself,
// and bytes that end a line or a C string.
func isSpecialByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == '#' || c == '"' || c == 0
}

// IsPlain reports whether v, written bare, reads back as the same
// unquoted token. A trailing backslash is special too: at the end of a line
// it would continue the line.
func IsPlain(v string) bool {
	if v == "" || (v[0] == '@' && len(v) > 1) || v[len(v)-1] == '\\' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if isSpecialByte(v[i]) {
			return false
		}
	}
	return true
}

// Field is one whitespace-separated field of a record: the comma-separated
// list of tokens it holds, with @file references already expanded.
type Field []String

// String joins the tokens with commas, the canonical spelling of a list.
func (f Field) String() string {
	parts := make([]string, len(f))
	for i, s := range f {
		parts[i] = s.String()
	}
	return strings.Join(parts, ",")
}

// Line is one tokenized record (hba.c TokenizedAuthLine).
type Line struct {
	// File is the file the record came from (an included file for records
	// read through include, include_if_exists or include_dir).
	File string
	// Line is the number of the record's first physical line.
	Line int
	// Raw is the record text with backslash continuations joined, exactly
	// as PostgreSQL keeps it for its "Connection matched" log line.
	Raw string
	// Fields are the record's fields; never empty.
	Fields []Field
}

// Error is a configuration error or warning, located at a file and line.
type Error struct {
	File string
	// Line is 0 for errors that concern a whole file.
	Line int
	Msg  string
}

// Error formats the error as file:line: message, or file: message when
// Line is 0.
func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// FileSystem is the file access ReadFile needs. Paths are passed as
// PostgreSQL computes them (AbsoluteConfigLocation): as written when
// absolute, otherwise joined to the directory of the including file.
type FileSystem interface {
	ReadFile(name string) ([]byte, error)
	ReadDir(name string) ([]fs.DirEntry, error)
}

type osFileSystem struct{}

// ReadFile reads a file of the host file system.
func (osFileSystem) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// ReadDir lists a directory of the host file system.
func (osFileSystem) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// OSFileSystem reads the real file system. It is the default when
// ReadOptions.FS is nil.
var OSFileSystem FileSystem = osFileSystem{}

// NewFS adapts an io/fs file system (for example fstest.MapFS) to
// FileSystem. Names are cleaned and a leading "/" is removed, so "/etc/a"
// and "etc/a" name the same file.
func NewFS(fsys fs.FS) FileSystem { return ioFS{fsys} }

type ioFS struct{ fsys fs.FS }

func (f ioFS) name(n string) string {
	n = strings.TrimLeft(filepath.ToSlash(filepath.Clean(n)), "/")
	if n == "" {
		n = "."
	}
	return n
}

// ReadFile reads name from the wrapped fs.FS.
func (f ioFS) ReadFile(name string) ([]byte, error) { return fs.ReadFile(f.fsys, f.name(name)) }

// ReadDir lists name in the wrapped fs.FS.
func (f ioFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return fs.ReadDir(f.fsys, f.name(name))
}

// ReadOptions controls ReadFile.
type ReadOptions struct {
	// FS is where files are read from; nil means OSFileSystem.
	FS FileSystem
	// MaxTokenLen is the longest token accepted, in bytes. 0 means no
	// limit, as in PostgreSQL 16 and later. PostgreSQL 15 used a
	// 10240-byte buffer, so 10239 reproduces its
	// "authentication file token too long, skipping: ..." error.
	MaxTokenLen int
}

// confFileMaxDepth is PostgreSQL's CONF_FILE_MAX_DEPTH: the top-level
// file is depth 0, and each include or @file adds one.
const confFileMaxDepth = 10

// maxFileOpens bounds the files read for one top-level file. PostgreSQL
// has no such bound, so a file that includes itself twice reads 2^10
// files, and five times about ten million; pgcertgate refuses that
// instead of stalling a reload.
const maxFileOpens = 10000

// Record is a tokenized line or the error that replaced it, in file order.
// Exactly one of Line and Err is set.
type Record struct {
	Line Line
	Err  *Error
}

// ReadFile tokenizes a pg_hba.conf or pg_ident.conf style file, mirroring
// hba.c tokenize_auth_file: comments, double quotes ("" for a literal quote,
// the quoted flag kept), backslash continuation, comma lists (`a, b` is one
// field), @file expansion (relative to the including file, nested), and the
// include, include_if_exists and include_dir records of PostgreSQL 16+.
//
// Lines that tokenized cleanly are returned in order, with included files
// expanded in place. err is the errors.Join of one *Error per bad record
// (all of them, not just the first). warnings holds the non-fatal messages,
// such as "skipping missing authentication file".
func ReadFile(path string, opts ReadOptions) (lines []Line, warnings []*Error, err error) {
	recs, warnings := ReadRecords(path, opts)
	var errs []error
	for _, r := range recs {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		lines = append(lines, r.Line)
	}
	return lines, warnings, errors.Join(errs...)
}

// ReadRecords is ReadFile keeping errors interleaved with the lines, so that
// a parser can report tokenizer and parser errors in file order, as hba.c
// load_hba does.
func ReadRecords(path string, opts ReadOptions) ([]Record, []*Error) {
	t := &tokenizer{fs: opts.FS, maxTok: opts.MaxTokenLen}
	if t.fs == nil {
		t.fs = OSFileSystem
	}
	data, msg, _ := t.openAuthFile(path, 0)
	if msg != "" {
		return []Record{{Err: &Error{File: path, Msg: msg}}}, nil
	}
	var recs []Record
	t.tokenizeAuthFile(path, data, &recs, 0)
	return recs, t.warnings
}

type tokenizer struct {
	opens    int
	fs       FileSystem
	maxTok   int
	warnings []*Error
}

// openAuthFile mirrors hba.c open_auth_file: the nesting check, then the
// read. On failure it returns PostgreSQL's message and whether the file
// simply does not exist (for include_if_exists).
func (t *tokenizer) openAuthFile(name string, depth int) (data []byte, msg string, notExist bool) {
	if depth > confFileMaxDepth {
		return nil, fmt.Sprintf("could not open file %s: maximum nesting depth exceeded", pgQuote(name)), false
	}
	if t.opens++; t.opens > maxFileOpens {
		return nil, fmt.Sprintf("could not open file %s: more than %d authentication files read", pgQuote(name), maxFileOpens), false
	}
	data, err := t.fs.ReadFile(name)
	if err != nil {
		isDir := errors.Is(err, syscall.EISDIR)
		if !isDir && !errors.Is(err, fs.ErrNotExist) {
			// Not every FileSystem reports EISDIR (io/fs ones say
			// "invalid argument").
			_, derr := t.fs.ReadDir(name)
			isDir = derr == nil
		}
		if isDir {
			// fopen() succeeds on a directory; the read fails.
			return nil, fmt.Sprintf("could not read file %s: Is a directory", pgQuote(name)), false
		}
		return nil, fmt.Sprintf("could not open file %s: %s", pgQuote(name), strerror(err)), errors.Is(err, fs.ErrNotExist)
	}
	return data, "", false
}

// pgQuote formats a string the way PostgreSQL's \"%s\" does: raw bytes
// between double quotes, without Go escaping.
func pgQuote(s string) string { return `"` + s + `"` }

// strerror renders an I/O error like C's strerror (%m), which is what
// PostgreSQL prints.
func strerror(err error) string {
	var errno syscall.Errno
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "No such file or directory"
	case errors.Is(err, fs.ErrPermission):
		return "Permission denied"
	case errors.Is(err, syscall.EISDIR):
		return "Is a directory"
	case errors.Is(err, syscall.ENOTDIR):
		return "Not a directory"
	case errors.Is(err, syscall.ELOOP):
		return "Too many levels of symbolic links"
	case errors.As(err, &errno):
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	s := err.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// absoluteConfigLocation mirrors PostgreSQL's AbsoluteConfigLocation: an
// absolute path is used as written; a relative one is taken from the
// directory of the including file and canonicalized.
func absoluteConfigLocation(location, callingFile string) string {
	if filepath.IsAbs(location) {
		return location
	}
	return filepath.Join(filepath.Dir(callingFile), location)
}

// physicalLines splits data like repeated pg_get_line_append calls: each
// line keeps its bytes up to '\n'; a trailing line without '\n' counts.
func physicalLines(data []byte) []string {
	var out []string
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, string(data))
			break
		}
		out = append(out, string(data[:i+1]))
		data = data[i+1:]
	}
	return out
}

// stripCRLF mirrors pg_strip_crlf: every trailing '\n' and '\r' goes.
func stripCRLF(s string) string {
	return strings.TrimRight(s, "\r\n")
}

// tokenizeAuthFile mirrors hba.c tokenize_auth_file: it appends one record
// per non-empty logical line of data (and the records of included files,
// in place) to recs.
func (t *tokenizer) tokenizeAuthFile(filename string, data []byte, recs *[]Record, depth int) {
	phys := physicalLines(data)
	lineNumber := 1
	for i := 0; i < len(phys); {
		// Collect the next logical line, handling backslash continuations.
		// The backslash must lie after the previous continuation point, so
		// that "\\" followed by two newlines does not chain twice.
		var buf strings.Builder
		lastBackslash := 0
		continuations := 0
		for i < len(phys) {
			p := phys[i]
			i++
			// C strings end at NUL: pg_get_line_append keeps nothing useful
			// past it.
			if j := strings.IndexByte(p, 0); j >= 0 {
				p = p[:j]
			}
			buf.WriteString(p)
			s := stripCRLF(buf.String())
			buf.Reset()
			buf.WriteString(s)
			if len(s) > lastBackslash && s[len(s)-1] == '\\' {
				s = s[:len(s)-1]
				buf.Reset()
				buf.WriteString(s)
				lastBackslash = len(s)
				continuations++
				continue
			}
			break
		}
		raw := buf.String()
		fields, errMsg := t.tokenizeLine(filename, raw, depth)

		if len(fields) == 0 && errMsg == "" {
			lineNumber += continuations + 1
			continue
		}
		if errMsg == "" && len(fields) == 2 {
			first, second := fields[0][0].Value, fields[1][0].Value
			handled := true
			switch first {
			case "include":
				errMsg = t.includeFile(filename, absoluteConfigLocation(second, filename), recs, depth+1, false, lineNumber)
			case "include_if_exists":
				errMsg = t.includeFile(filename, absoluteConfigLocation(second, filename), recs, depth+1, true, lineNumber)
			case "include_dir":
				errMsg = t.includeDir(filename, second, recs, depth+1)
			default:
				handled = false
			}
			if handled && errMsg == "" {
				lineNumber += continuations + 1
				continue
			}
		}
		if errMsg != "" {
			*recs = append(*recs, Record{Err: &Error{File: filename, Line: lineNumber, Msg: errMsg}})
		} else {
			*recs = append(*recs, Record{Line: Line{File: filename, Line: lineNumber, Raw: raw, Fields: fields}})
		}
		lineNumber += continuations + 1
	}
}

// includeFile mirrors hba.c tokenize_include_file; full is the included
// file's path as AbsoluteConfigLocation computed it.
func (t *tokenizer) includeFile(outer, full string, recs *[]Record, depth int, missingOK bool, line int) string {
	data, msg, notExist := t.openAuthFile(full, depth)
	if msg != "" {
		if notExist && missingOK {
			t.warnings = append(t.warnings, &Error{File: outer, Line: line,
				Msg: fmt.Sprintf("skipping missing authentication file %s", pgQuote(full))})
			return ""
		}
		return msg
	}
	t.tokenizeAuthFile(full, data, recs, depth)
	return ""
}

// includeDir mirrors the include_dir branch of tokenize_auth_file together
// with conffiles.c GetConfFilesInDir: files whose names end in ".conf", are
// at least six bytes long and do not start with '.', sorted by strcmp.
// Errors of the individual files are collected, one per line.
func (t *tokenizer) includeDir(outer, dirName string, recs *[]Record, depth int) string {
	if strings.Trim(dirName, " \t\r\n") == "" {
		return "empty configuration directory name"
	}
	dir := absoluteConfigLocation(dirName, outer)
	ents, err := t.fs.ReadDir(dir)
	if err != nil {
		return fmt.Sprintf("could not open directory %s", pgQuote(dir))
	}
	var names []string
	for _, de := range ents {
		n := de.Name()
		if len(n) < 6 || n[0] == '.' || !strings.HasSuffix(n, ".conf") {
			continue
		}
		full := filepath.Join(dir, n)
		isDir := de.IsDir()
		if de.Type()&fs.ModeSymlink != 0 {
			// get_dirent_type looks through symlinks.
			if _, err := t.fs.ReadDir(full); err == nil {
				isDir = true
			}
		}
		if isDir {
			continue
		}
		names = append(names, full)
	}
	sort.Strings(names)
	var errs []string
	for _, n := range names {
		if msg := t.includeFile(outer, n, recs, depth, false, 0); msg != "" {
			errs = append(errs, msg)
		}
	}
	return strings.Join(errs, "\n")
}

// tokenizeLine splits one logical line into fields (the field loop of
// tokenize_auth_file). It stops at the first error, as PostgreSQL does.
func (t *tokenizer) tokenizeLine(filename, line string, depth int) ([]Field, string) {
	var fields []Field
	pos := 0
	var errMsg string
	for pos < len(line) && errMsg == "" {
		var f Field
		f, errMsg = t.nextFieldExpand(filename, line, &pos, depth)
		if len(f) > 0 {
			fields = append(fields, f)
		}
	}
	return fields, errMsg
}

// nextFieldExpand mirrors hba.c next_field_expand: one comma-separated
// list, with unquoted @file tokens replaced by the file's tokens.
func (t *tokenizer) nextFieldExpand(filename, line string, pos *int, depth int) (Field, string) {
	var toks Field
	for {
		tok, ok, initialQuote, trailingComma, errMsg := t.nextToken(line, pos)
		if errMsg != "" {
			return toks, errMsg
		}
		if !ok {
			break
		}
		if !initialQuote && len(tok) > 1 && tok[0] == '@' {
			var msg string
			toks, msg = t.expandFile(toks, filename, tok[1:], depth+1)
			if msg != "" {
				return toks, msg
			}
		} else {
			toks = append(toks, String{Value: tok, Quoted: initialQuote})
		}
		if !trailingComma {
			break
		}
	}
	return toks, ""
}

// expandFile mirrors hba.c tokenize_expand_file: every token of every line
// of the file (include records inside it expanded too) is appended to toks.
// The first error of any of its lines is the error of the referencing line.
func (t *tokenizer) expandFile(toks Field, outer, inc string, depth int) (Field, string) {
	full := absoluteConfigLocation(inc, outer)
	data, msg, _ := t.openAuthFile(full, depth)
	if msg != "" {
		return toks, msg
	}
	var recs []Record
	t.tokenizeAuthFile(full, data, &recs, depth)
	for _, r := range recs {
		if r.Err != nil {
			return toks, r.Err.Msg
		}
		for _, f := range r.Line.Fields {
			toks = append(toks, f...)
		}
	}
	return toks, ""
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// nextToken mirrors hba.c next_token. It reads one token starting at *pos
// and leaves *pos on the character that ended it (a terminating comma is
// neither returned nor consumed). ok is false at end of line. initialQuote
// reports a quote before the first character.
func (t *tokenizer) nextToken(line string, pos *int) (tok string, ok, initialQuote, trailingComma bool, errMsg string) {
	i := *pos
	for i < len(line) && (isBlank(line[i]) || line[i] == ',') {
		i++
	}
	var buf []byte
	inQuote, wasQuote, sawQuote := false, false, false
	for i < len(line) && (!isBlank(line[i]) || inQuote) {
		c := line[i]
		if c == '#' && !inQuote {
			i = len(line)
			break
		}
		if t.maxTok > 0 && len(buf) >= t.maxTok {
			// PostgreSQL 15: the token is reported and the rest of the
			// line discarded.
			*pos = len(line)
			return "", false, false, false,
				fmt.Sprintf("authentication file token too long, skipping: %s", pgQuote(string(buf)))
		}
		if c == ',' && !inQuote {
			trailingComma = true
			break
		}
		if c != '"' || wasQuote {
			buf = append(buf, c)
		}
		if inQuote && c == '"' {
			wasQuote = !wasQuote
		} else {
			wasQuote = false
		}
		if c == '"' {
			inQuote = !inQuote
			sawQuote = true
			if len(buf) == 0 {
				initialQuote = true
			}
		}
		i++
	}
	*pos = i
	return string(buf), sawQuote || len(buf) > 0, initialQuote, trailingComma, ""
}

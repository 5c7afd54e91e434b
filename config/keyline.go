package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// KeyError is an error about one key of the configuration file, or about
// the file that key names. It prints as file:line: key: message, the line
// being the key's own, as a compiler names a position; a key the file
// does not set (a required one left out) has no line: file: key: message.
type KeyError struct {
	File string
	// Line is where the file sets Key; 0 when it does not.
	Line int
	// Key is dotted, as toml.Key.String writes it ("backend.dsn").
	Key string
	Err error
}

func (e *KeyError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s: %v", e.File, e.Key, e.Err)
	}
	return fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Key, e.Err)
}

func (e *KeyError) Unwrap() error { return e.Err }

// keyError makes the KeyError for a dotted key ("backend.dsn"); format
// may use %w.
func (c *Config) keyError(key, format string, args ...any) error {
	return c.errorAt(toml.Key(strings.Split(key, ".")), format, args...)
}

// errorAt is keyError for a key as the decoder names it (Undecoded), whose
// parts may themselves hold dots.
func (c *Config) errorAt(key toml.Key, format string, args ...any) error {
	return &KeyError{File: c.Path, Line: keyLine(c.source, key), Key: key.String(), Err: fmt.Errorf(format, args...)}
}

// fileErrors splits the joined errors of loading path, the pg_hba.conf or
// pg_ident.conf that key names. One about path as a whole (it cannot be
// opened, or holds no entries) is about the key, and says so with the
// key's line; one on a line of path or of a file it includes keeps that
// line.
func (c *Config) fileErrors(key, path string, err error) []error {
	var out []error
	for _, e := range unjoin(err) {
		if ae, ok := errors.AsType[*authfile.Error](e); ok && ae.Line == 0 && ae.File == path {
			e = c.keyError(key, "%s", ae.Msg)
		}
		out = append(out, e)
	}
	return out
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// sortByLine orders errors as the file does: errors about keys the file
// leaves out first, then by the line of the key, others last; otherwise
// as found.
func sortByLine(errs []error) {
	rank := func(err error) int {
		if ke, ok := errors.AsType[*KeyError](err); ok {
			return ke.Line
		}
		return math.MaxInt
	}
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(rank(a), rank(b)) })
}

// errLineProbe is what lineProbe answers; only probeLine sees it.
const errLineProbe = "line probe"

// lineProbe refuses every value, so that the decoder reports where the key
// it was decoding is.
type lineProbe struct{}

func (lineProbe) UnmarshalTOML(any) error { return errors.New(errLineProbe) }

// keyLine returns the line of source that sets key, or 0 when no line
// does. A table only implied by a dotted key (backend.dsn = …) has the
// line of its first key.
func keyLine(source string, key toml.Key) int {
	if source == "" || len(key) == 0 {
		return 0
	}
	if line := probeLine(source, key); line > 0 {
		return line
	}
	var raw map[string]any
	md, err := toml.Decode(source, &raw)
	if err != nil {
		return 0
	}
	for _, k := range md.Keys() { // in the file's order
		if len(k) > len(key) && slices.Equal(k[:len(key)], key) {
			return probeLine(source, k)
		}
	}
	return 0
}

// probeLine returns the line the decoder read key from, 0 if it has none.
//
// The decoder records every key's position but keeps it private; it
// reports it only in the ParseError of a value that refused to decode. So
// decode source into a struct holding nothing but the path to key, whose
// last field refuses any value: the error carries the line the decoder
// itself read key from. Only errors pay for this, one parse per key.
func probeLine(source string, key toml.Key) int {
	t := reflect.TypeFor[lineProbe]()
	for i := len(key) - 1; i >= 0; i-- {
		// The decoder matches a field by its tag; strconv.Quote keeps
		// any key (spaces, quotes) a valid tag value.
		tag := reflect.StructTag("toml:" + strconv.Quote(key[i]))
		t = reflect.StructOf([]reflect.StructField{{Name: "F", Type: t, Tag: tag}})
	}
	_, err := toml.Decode(source, reflect.New(t).Interface())
	var perr toml.ParseError
	if errors.As(err, &perr) && perr.Message == errLineProbe {
		return perr.Position.Line
	}
	return 0
}

// typeErrors names every key whose value has a TOML type its field cannot
// take (port = "6432"). The decoder stops at the first such value and
// names it only inside its own message, so the file is read again here,
// untyped, and each field's key checked against its type.
func (c *Config) typeErrors() []error {
	var raw map[string]any
	md, err := toml.Decode(c.source, &raw)
	if err != nil {
		return nil
	}
	return c.checkTypes(md, nil, reflect.TypeOf(*c))
}

func (c *Config) checkTypes(md toml.MetaData, prefix toml.Key, t reflect.Type) []error {
	var errs []error
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		if name == "" || name == "-" {
			continue
		}
		key := append(prefix[:len(prefix):len(prefix)], name)
		if !md.IsDefined(key...) {
			continue
		}
		got, want := md.Type(key...), tomlType(f.Type)
		if got == "" {
			// Defined without a type of its own: a table only implied by
			// a dotted key (backend.dsn = …).
			got = "Hash"
		}
		switch {
		case want == "Hash" && got == "Hash" && f.Type.Kind() == reflect.Map:
			errs = append(errs, c.checkMapTypes(md, key, f.Type.Elem())...)
		case want == "Hash" && got == "Hash":
			errs = append(errs, c.checkTypes(md, key, f.Type)...)
		case want == "":
			// A text value (a duration) takes any single value and
			// judges its text itself.
			if got == "Array" || got == "Hash" || got == "ArrayHash" {
				errs = append(errs, c.errorAt(key, "must be a string, not %s", typeName(got)))
			}
		case got != want:
			errs = append(errs, c.errorAt(key, "must be %s, not %s", typeName(want), typeName(got)))
		}
	}
	return errs
}

var textUnmarshaler = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()

// tomlType is the TOML type (as MetaData.Type names it) a field of type t
// takes, or "" for a type that decodes its own text.
func tomlType(t reflect.Type) string {
	switch {
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		return ""
	case t.Kind() == reflect.Struct, t.Kind() == reflect.Map:
		return "Hash"
	case t.Kind() == reflect.Bool:
		return "Bool"
	case t.Kind() == reflect.String:
		return "String"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "Integer"
	}
	return t.Kind().String()
}

// typeName words a MetaData.Type name for a message.
func typeName(t string) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return t
}

var typeNames = map[string]string{
	"String":    "a string",
	"Integer":   "an integer",
	"Float":     "a float",
	"Bool":      "a boolean",
	"Datetime":  "a date-time",
	"Array":     "an array",
	"Hash":      "a table",
	"ArrayHash": "an array of tables",
}

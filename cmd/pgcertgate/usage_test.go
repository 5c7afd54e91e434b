package main

import (
	"bytes"
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The usage text is written once, in main.go. README.md's Commands section
// shows it verbatim (rewritten from it with -update-readme), and each
// command's lines name exactly the flags its FlagSet registers.

var updateREADME = flag.Bool("update-readme", false, "rewrite the fenced block of README.md's Commands section from the usage text")

const readmePath = "../../README.md"

// helpText is what `pgcertgate help` prints.
func helpText(t *testing.T) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run([]string{"help"}, &out, &errOut); code != 0 || errOut.Len() > 0 {
		t.Fatalf("help: exit %d, stderr %q", code, errOut.String())
	}
	return out.String()
}

// usageCommand is one command of the usage text: its name and every line
// that belongs to it (its synopsis, continued or not, and description).
type usageCommand struct {
	name  string
	lines string
}

var commandLine = regexp.MustCompile(`^  pgcertgate ([a-z][a-z-]*)\b`)

// usageCommands splits the usage text into its commands: a line
// "  pgcertgate NAME" starts one, and the more deeply indented lines that
// follow belong to it.
func usageCommands(text string) []usageCommand {
	var cmds []usageCommand
	for _, line := range strings.Split(text, "\n") {
		if m := commandLine.FindStringSubmatch(line); m != nil {
			cmds = append(cmds, usageCommand{name: m[1]})
		} else if len(cmds) == 0 || !strings.HasPrefix(line, "   ") {
			continue
		}
		cmds[len(cmds)-1].lines += line + "\n"
	}
	return cmds
}

// documentedFlags are the --name flags a command's usage lines mention.
func documentedFlags(lines string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`--([a-z][a-z-]*)`).FindAllStringSubmatch(lines, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// registeredFlags are the flags a command's FlagSet really defines, read
// from what the flag package prints for -h (PrintDefaults lists each one
// as "  -name ...").
func registeredFlags(t *testing.T, name string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	run([]string{name, "-h"}, &out, &errOut)
	if strings.Contains(errOut.String(), "unknown command") {
		t.Fatalf("the usage text names %q, which run does not know", name)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`).FindAllStringSubmatch(errOut.String(), -1) {
		flags = append(flags, m[1])
	}
	slices.Sort(flags)
	return flags
}

// TestUsageFlags checks that every command of the usage text names exactly
// the flags its FlagSet registers: a flag added, renamed or removed in the
// code without the usage text (and so the README) fails here.
func TestUsageFlags(t *testing.T) {
	cmds := usageCommands(helpText(t))
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	if want := []string{"serve", "check", "explain", "fingerprint", "install-sql", "demo", "version", "help"}; !slices.Equal(names, want) {
		t.Errorf("usage text lists commands %q, want %q", names, want)
	}
	for _, c := range cmds {
		t.Run(c.name, func(t *testing.T) {
			got, want := documentedFlags(c.lines), registeredFlags(t, c.name)
			if !slices.Equal(got, want) {
				t.Errorf("usage text names flags %q, the FlagSet registers %q:\n%s", got, want, c.lines)
			}
		})
	}
}

// readmeCommandsBlock finds the fenced block that opens README.md's
// Commands section, and returns its body and the body's byte range.
func readmeCommandsBlock(t *testing.T, readme string) (body string, start, end int) {
	t.Helper()
	section := strings.Index(readme, "\n## Commands\n")
	if section < 0 {
		t.Fatalf("%s has no Commands section", readmePath)
	}
	openAt := strings.Index(readme[section:], "\n```\n")
	if openAt < 0 {
		t.Fatalf("%s: the Commands section has no ``` block", readmePath)
	}
	start = section + openAt + len("\n```\n")
	closeAt := strings.Index(readme[start:], "```\n")
	if closeAt < 0 {
		t.Fatalf("%s: the Commands section's ``` block is not closed", readmePath)
	}
	end = start + closeAt
	if next := strings.Index(readme[section+1:], "\n## "); next >= 0 && section+1+next < end {
		t.Fatalf("%s: the Commands section's first ``` block is past the section", readmePath)
	}
	return readme[start:end], start, end
}

// TestREADMEShowsUsage checks that README.md's Commands section shows the
// usage text verbatim; -update-readme rewrites it from the usage text.
func TestREADMEShowsUsage(t *testing.T) {
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	body, start, end := readmeCommandsBlock(t, readme)
	want := helpText(t)
	if body == want {
		return
	}
	if *updateREADME {
		if err := os.WriteFile(readmePath, []byte(readme[:start]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the Commands block of %s", readmePath)
		return
	}
	t.Errorf("README.md's Commands block differs from `pgcertgate help`; run\n"+
		"  go test ./cmd/pgcertgate -run TestREADMEShowsUsage -update-readme\n"+
		"README.md:\n%s\nusage:\n%s", body, want)
}

package certauth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLogText(t *testing.T) {
	sumOf := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	long := "spiffe://x/" + strings.Repeat("a", 60000) + "/app"
	exact := strings.Repeat("b", LogTextMax)
	// é is two bytes: with 1023 ASCII bytes before it, byte 1024 is its
	// second half, and the cut moves before it.
	split := strings.Repeat("c", LogTextMax-1) + "é" + strings.Repeat("d", 10)
	invalid := strings.Repeat("\x80", LogTextMax+10)
	for _, c := range []struct{ name, in, want string }{
		{"short", "CN=alice", "CN=alice"},
		{"empty", "", ""},
		{"exactly the limit", exact, exact},
		{"long", long, long[:LogTextMax] + fmt.Sprintf("… [%d bytes, sha256 %s]", len(long), sumOf(long))},
		{"no split UTF-8", split, split[:LogTextMax-1] + fmt.Sprintf("… [%d bytes, sha256 %s]", len(split), sumOf(split))},
		{"not UTF-8", invalid, invalid[:LogTextMax] + fmt.Sprintf("… [%d bytes, sha256 %s]", len(invalid), sumOf(invalid))},
	} {
		got := LogText(c.in)
		if got != c.want {
			t.Errorf("%s: got %.80q… (%d bytes), want %.80q… (%d bytes)", c.name, got, len(got), c.want, len(c.want))
		}
		if len(c.in) > LogTextMax && len(got) > LogTextMax+100 {
			t.Errorf("%s: %d bytes kept", c.name, len(got))
		}
		if utf8.ValidString(c.in) && !utf8.ValidString(got) {
			t.Errorf("%s: a UTF-8 name became invalid", c.name)
		}
	}
}

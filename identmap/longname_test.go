package identmap

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgcertgate/pgcertgate/internal/authfile"
)

// longSPIFFE is a certificate identity of the size a client certificate
// can carry: a SAN URI of about 60 KB.
var longSPIFFE = "spiffe://x/" + strings.Repeat("a", 60000) + "/app"

func longNameMap(t *testing.T) *Map {
	t.Helper()
	m, err := Parse([]authfile.Line{
		line(1, authfile.Field{tok("plain")}, authfile.Field{tok("/^spiffe://x/a+/app$")}, authfile.Field{tok("a")}),
		line(2, authfile.Field{tok("s")}, authfile.Field{qtok("/^spiffe://x/(a)a*/app$")}, authfile.Field{tok(`\1`)}),
		line(3, authfile.Field{tok("u")}, authfile.Field{tok("/^spiffe://x/a+/app$")}, authfile.Field{tok("/^(?:.{0,255}){3}z")}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCheckLongName: a \1 line maps a 60 KB identity well within the
// authentication deadline (the quadratic matcher took seconds).
func TestCheckLongName(t *testing.T) {
	m := longNameMap(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	res, err := m.Check(ctx, "s", "a", longSPIFFE, nil)
	if err != nil || !res.Matched {
		t.Fatalf("Check: matched=%v, err=%v, %.200s", res.Matched, err, res.LogMessage)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a 60 KB identity took %v", took)
	}
}

// TestCheckContextCancelled: once the context is done, Check returns its
// error instead of an answer, on every kind of regex line.
func TestCheckContextCancelled(t *testing.T) {
	m := longNameMap(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct{ mapName, pgUser string }{{"s", "a"}, {"plain", "a"}, {"u", "a"}} {
		res, err := m.Check(cancelled, c.mapName, c.pgUser, longSPIFFE, nil)
		if !errors.Is(err, context.Canceled) || res.Matched {
			t.Errorf("map %s with a cancelled context: matched=%v, err=%v", c.mapName, res.Matched, err)
		}
	}
}

// TestCheckDeadline: a deadline stops a lookup that has seconds of work
// left, in time.
func TestCheckDeadline(t *testing.T) {
	// Many lines, each matched against a 4 MB name.
	var lines []authfile.Line
	for i := range 200 {
		lines = append(lines, line(i+1, authfile.Field{tok("s")}, authfile.Field{tok(`/^spiffe://x/(a)a*/zzz$`)}, authfile.Field{tok(`\1`)}))
	}
	m, err := Parse(lines)
	if err != nil {
		t.Fatal(err)
	}
	huge := "spiffe://x/" + strings.Repeat("a", 4<<20) + "/app"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = m.Check(ctx, "s", "a", huge, nil)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the deadline's", err)
	}
	if took > time.Second {
		t.Errorf("a lookup with a 20 ms deadline took %v", took)
	}
}

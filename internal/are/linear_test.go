package are

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// refExec is exec with the reference (quadratic) matcher of
// match_ref_test.go.
func refExec(re *Regexp, s string) (caps map[int][2]int, span [2]int, matched bool, err error) {
	mapped := mapBytes(s)
	loc := re.prog.FindStringIndex(mapped)
	if loc == nil {
		return nil, span, false, nil
	}
	begin := len(unmapString(mapped[:loc[0]]))
	m := newRefMatcher(s)
	if !m.findAt(re.tree, begin) {
		return nil, span, false, errEngines
	}
	return m.caps, m.span, true, nil
}

// sameAsReference reports how the linear matcher's answer on (re, s)
// differs from the reference's, or "" when it does not: the whole match
// and every capture, not only group 1. It asks twice: with the DFA caches
// as they are, and with caches so small that every run soon falls back to
// simulating the NFA.
func sameAsReference(re *Regexp, s string) string {
	wantCaps, wantSpan, wantOK, wantErr := refExec(re, s)
	for _, budget := range []int{dfaBudget, 256} {
		m := newMatcher(context.Background(), s)
		m.dfaBudget = budget
		m, ok, err := re.execOn(m)
		if (err != nil) != (wantErr != nil) || ok != wantOK {
			return fmt.Sprintf("cache %d: matched=%v err=%v, reference matched=%v err=%v", budget, ok, err, wantOK, wantErr)
		}
		if ok && (m.span != wantSpan || !maps.Equal(m.caps, wantCaps)) {
			return fmt.Sprintf("cache %d: span %v caps %v, reference span %v caps %v", budget, m.span, m.caps, wantSpan, wantCaps)
		}
	}
	return ""
}

// FuzzGroup1Linear compares the linear matcher with the reference on
// short subjects: the whole match and every capture must be the same.
func FuzzGroup1Linear(f *testing.F) {
	for _, s := range []string{
		`^(.*)@example\.com$`, `^spiffe://x/(a)a*/app$`, `Y*?([0-9]{1,3})`, `(a|ab)(c|bcd)(d*)`, `(a*)*`, `(a*)+`,
		`((a)|b)+`, `(?:(a)|b)*`, `(a|b)*?`, `(a+|b+)*c`, `(a?)+?`, `(a*?)(a*)`, `(a*)(a*?)$`, `^(ab)*$`,
		`((a)|b){0,3}`, `((a)|b){0,2}?`, `(?:(a*)b?){0,4}c`, `(?n)(^a|b$)*`, `((a)*?b)*`,
	} {
		f.Add(s, "aab@example.com")
	}
	f.Fuzz(func(t *testing.T, pattern, subject string) {
		if len(pattern) > 100 || len(subject) > 24 {
			return
		}
		re, err := Compile(pattern)
		if err != nil {
			return
		}
		if d := sameAsReference(re, subject); d != "" {
			t.Fatalf("%q on %q: %s", pattern, subject, d)
		}
		if ok, err := re.MatchContext(context.Background(), subject); err != nil || ok != re.MatchString(subject) {
			t.Fatalf("%q on %q: MatchContext says %v (%v), RE2 %v", pattern, subject, ok, err, !ok)
		}
	})
}

// TestLinearMatchesReference runs the comparison of FuzzGroup1Linear
// over every recorded PostgreSQL case and over random patterns with
// captures inside iterations, the dissection's hardest part.
func TestLinearMatchesReference(t *testing.T) {
	for _, c := range recordedCases(t) {
		re, err := Compile(c[0])
		if err != nil {
			continue
		}
		if d := sameAsReference(re, c[1]); d != "" {
			t.Errorf("%q on %q: %s", c[0], c[1], d)
		}
	}
	rng := rand.New(rand.NewSource(13))
	n := 1000
	if testing.Short() {
		n = 200
	}
	checked := 0
	for i := 0; i < n; i++ {
		pat := randCapturePattern(rng, 0)
		re, err := Compile(pat)
		if err != nil {
			continue
		}
		checked++
		for j := 0; j < 4; j++ {
			s := randCaptureSubject(rng)
			if d := sameAsReference(re, s); d != "" {
				t.Fatalf("%q on %q: %s", pat, s, d)
			}
		}
	}
	t.Logf("%d random patterns checked", checked)
}

var (
	capAtoms   = []string{"a", "b", "c", ".", "[ab]", "[^a]", "()"}
	capAnchors = []string{"^", "$", `\A`, `\Z`}
	capQuants  = []string{"", "", "*", "+", "?", "*?", "+?", "??", "{2}", "{0,2}", "{1,3}", "{0,3}?", "{2,}", "{2,}?"}
)

func randCapturePattern(rng *rand.Rand, depth int) string {
	var b strings.Builder
	if depth == 0 && rng.Intn(6) == 0 {
		b.WriteString([]string{"(?n)", "(?p)", "(?w)"}[rng.Intn(3)])
	}
	for n := 1 + rng.Intn(3); n > 0; n-- {
		switch r := rng.Intn(9); {
		case r < 1:
			b.WriteString(capAnchors[rng.Intn(len(capAnchors))])
			continue
		case r < 4 || depth > 2:
			b.WriteString(capAtoms[rng.Intn(len(capAtoms))])
		case r < 6:
			b.WriteString("(" + randCapturePattern(rng, depth+1) + ")")
		case r < 7:
			b.WriteString("(?:" + randCapturePattern(rng, depth+1) + ")")
		default:
			b.WriteString("(" + randCapturePattern(rng, depth+1) + "|" + randCapturePattern(rng, depth+1) + ")")
		}
		b.WriteString(capQuants[rng.Intn(len(capQuants))])
	}
	return b.String()
}

func randCaptureSubject(rng *rand.Rand) string {
	b := make([]byte, rng.Intn(10))
	for i := range b {
		b[i] = "aabbc\n"[rng.Intn(6)]
	}
	return string(b)
}

// recordedCases returns the (pattern, subject) pairs of
// testdata/pg15-regex.txt.
func recordedCases(t testing.TB) [][2]string {
	t.Helper()
	f, err := os.Open("testdata/pg15-regex.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pairs [][2]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		fields := strings.Fields(line)
		pat, err1 := hex.DecodeString(fields[0])
		subj, err2 := hex.DecodeString(fields[1])
		if len(fields) > 1 && (fields[1] == "N" || fields[1] == "E" || fields[1] == "M") {
			subj, err2 = nil, nil // empty subject: the field is absent
		}
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line %q", line)
		}
		pairs = append(pairs, [2]string{string(pat), string(subj)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return pairs
}

// recordedPatterns returns the distinct patterns of the recorded cases
// that compile, and the distinct subjects.
func recordedPatterns(t testing.TB) (res []*Regexp, subjects []string) {
	seenP, seenS := map[string]bool{}, map[string]bool{}
	for _, c := range recordedCases(t) {
		if !seenP[c[0]] {
			seenP[c[0]] = true
			if re, err := Compile(c[0]); err == nil {
				res = append(res, re)
			}
		}
		if !seenS[c[1]] {
			seenS[c[1]] = true
			subjects = append(subjects, c[1])
		}
	}
	return res, subjects
}

// longSubject is an identity of n bytes: pre, then fill repeated, then
// post.
func longSubject(pre, fill, post string, n int) string {
	k := n - len(pre) - len(post)
	return pre + strings.Repeat(fill, k/len(fill)+1)[:k] + post
}

// longFamilies are the shapes of long identity the budget is checked on:
// each recorded subject repeated, and identities with the issue's shape.
func longFamilies(subjects []string, n int) map[string]string {
	fam := map[string]string{
		"email":      longSubject("", "a", "@example.com", n),
		"spiffe":     longSubject("spiffe://x/", "a", "/app", n),
		"dn":         longSubject("CN=", "a", ",OU=x", n),
		"spiffe-ns":  longSubject("spiffe://prod.example.org/ns/", "web-", "/sa/app", n),
		"newlines":   longSubject("", "a\n", "", n),
		"high-bytes": longSubject("", "\xc3\xa9", "", n),
	}
	for _, s := range subjects {
		if s != "" {
			fam[fmt.Sprintf("rep(%q)", s)] = longSubject("", s, "", n)
		}
	}
	return fam
}

// The two patterns an identity of the issue's shape is mapped with.
var issuePatterns = []string{`^(.*)@example\.com$`, `^spiffe://x/(a)a*/app$`}

// TestGroup1LongIdentity: a \1 lookup on a 64 KiB identity takes well
// under a second (the quadratic matcher took 13 s and more), and returns
// what a short identity of the same shape shows it should.
func TestGroup1LongIdentity(t *testing.T) {
	for _, c := range []struct{ pat, s, g1 string }{
		{issuePatterns[0], longSubject("", "a", "@example.com", 64<<10), strings.Repeat("a", 64<<10-len("@example.com"))},
		{issuePatterns[1], longSubject("spiffe://x/", "a", "/app", 64<<10), "a"},
	} {
		re, err := Compile(c.pat)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		matched, g1, ok, err := re.Group1(context.Background(), c.s)
		took := time.Since(start)
		if err != nil || !matched || !ok || g1 != c.g1 {
			t.Errorf("%q: matched=%v ok=%v err=%v len(g1)=%d, want len %d", c.pat, matched, ok, err, len(g1), len(c.g1))
		}
		// Generous for -race on a loaded machine; the benchmark has the
		// real numbers.
		if took > time.Second {
			t.Errorf("%q on a 64 KiB identity took %v", c.pat, took)
		}
	}
}

// TestGroup1WorkIsLinear: for every recorded pattern and every long
// identity shape, the matcher's work on a name four times as long is at
// most about four times as much: linear, whatever the machine's speed.
// (The quadratic matcher's grew sixteenfold; BenchmarkGroup1_64KiB has the
// times at 64 KiB.)
func TestGroup1WorkIsLinear(t *testing.T) {
	res, subjects := recordedPatterns(t)
	for _, p := range issuePatterns {
		res = append(res, mustCompile(t, p))
	}
	small, large := longFamilies(subjects, 1<<10), longFamilies(subjects, 4<<10)
	if testing.Short() {
		small, large = longFamilies(subjects, 512), longFamilies(subjects, 2<<10)
	}
	worst, worstWhat := 0.0, ""
	for _, re := range res {
		for name, s := range small {
			ws, wl := work(t, re, s), work(t, re, large[name])
			ratio := float64(wl+1) / float64(ws+1)
			if ratio > worst {
				worst, worstWhat = ratio, fmt.Sprintf("%q on %s", re, name)
			}
			if wl > 4*ws+ws/2+1000 {
				t.Errorf("%q on %s: %d steps on the short identity, %d on the long one", re, name, ws, wl)
			}
		}
	}
	t.Logf("%d patterns × %d identity shapes; largest growth ×%.2f (%s)", len(res), len(small), worst, worstWhat)
}

func work(t *testing.T, re *Regexp, s string) int {
	t.Helper()
	m, _, err := re.exec(context.Background(), s)
	if err != nil {
		t.Fatalf("%q: %v", re, err)
	}
	if m == nil {
		return 0
	}
	return m.steps
}

func mustCompile(t testing.TB, p string) *Regexp {
	t.Helper()
	re, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

// TestGroup1ContextDone: a lookup stops with the context's error once it
// is done, however long the identity and whatever the pattern, and does
// not start when it already is.
func TestGroup1ContextDone(t *testing.T) {
	s := longSubject("", "a", "@example.com", 4<<20)
	for _, p := range append([]string{`((a)|b)+@`, `(a|b)*?(.)@`, `((a*)b?){0,200}@`}, issuePatterns...) {
		re := mustCompile(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, _, err := re.Group1(ctx, s); !errors.Is(err, context.Canceled) {
			t.Errorf("%q with a cancelled context: err = %v", p, err)
		}
		if _, err := re.MatchContext(ctx, s); !errors.Is(err, context.Canceled) {
			t.Errorf("%q: MatchContext with a cancelled context: err = %v", p, err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
		start := time.Now()
		_, _, _, err := re.Group1(ctx, s)
		took := time.Since(start)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%q: err = %v", p, err)
		}
		// Far more work than 1 ms; the bound leaves room for the race
		// detector and a loaded machine.
		if took > 300*time.Millisecond {
			t.Errorf("%q: a lookup with a 1 ms deadline took %v", p, took)
		}
	}
}

// BenchmarkGroup1_64KiB is a pg_ident.conf \1 lookup (Group1) on long
// identities: the issue's two patterns at 1, 4, 16 and 64 KiB, and every
// recorded pattern on 64 KiB identities of each shape, where
// slowest-ms/lookup is the slowest pattern's time.
func BenchmarkGroup1_64KiB(b *testing.B) {
	ctx := context.Background()
	for i, p := range issuePatterns {
		re := mustCompile(b, p)
		for _, n := range []int{1 << 10, 4 << 10, 16 << 10, 64 << 10} {
			var s string
			if i == 0 {
				s = longSubject("", "a", "@example.com", n)
			} else {
				s = longSubject("spiffe://x/", "a", "/app", n)
			}
			b.Run(fmt.Sprintf("%s/%dKiB", []string{"email", "spiffe"}[i], n>>10), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if m, _, ok, err := re.Group1(ctx, s); !m || !ok || err != nil {
						b.Fatal("no match")
					}
				}
			})
		}
	}
	res, subjects := recordedPatterns(b)
	fams := longFamilies(subjects, 64<<10)
	for _, name := range slices.Sorted(maps.Keys(fams)) {
		s := fams[name]
		b.Run("recorded/"+name, func(b *testing.B) {
			// Each pattern's fastest time over the iterations (a loaded
			// machine only ever adds to it), and the slowest pattern's.
			fastest := make([]time.Duration, len(res))
			for b.Loop() {
				for i, re := range res {
					t0 := time.Now()
					if _, _, _, err := re.Group1(ctx, s); err != nil {
						b.Fatal(err)
					}
					if d := time.Since(t0); fastest[i] == 0 || d < fastest[i] {
						fastest[i] = d
					}
				}
			}
			b.ReportMetric(float64(slices.Max(fastest).Microseconds())/1000, "slowest-ms/lookup")
			b.ReportMetric(float64(len(res)), "patterns")
		})
	}
}

package admin

import (
	"slices"
	"unicode/utf8"
)

// fitText shortens the strings so that together they take at most budget
// bytes, cutting the longest first: every string keeps min(len, c) bytes
// for the largest c that fits (cut back to a UTF-8 boundary). It reports
// whether anything was cut. Names in certificates and startup packets are
// client-controlled and may be any length; what the admin endpoint keeps
// of them must not be.
func fitText(budget int, fields ...*string) bool {
	total := 0
	for _, f := range fields {
		total += len(*f)
	}
	if total <= budget {
		return false
	}
	lens := make([]int, len(fields))
	for i, f := range fields {
		lens[i] = len(*f)
	}
	slices.Sort(lens)
	// Water-filling: find the cap c at which the short strings kept
	// whole plus c for each longer one fill the budget.
	c, used := 0, 0
	for i, n := range lens {
		rest := len(lens) - i
		if used+n*rest > budget {
			c = (budget - used) / rest
			break
		}
		used += n
	}
	for _, f := range fields {
		if len(*f) > c {
			*f = cutUTF8(*f, c)
		}
	}
	return true
}

// cutUTF8 returns at most n bytes of s, ending on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	// A copy, so that the cut string does not keep the original (a
	// long certificate name) alive.
	return string([]byte(s[:n]))
}

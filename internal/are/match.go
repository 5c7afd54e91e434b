package are

import (
	"context"
	"errors"
	"math/bits"
)

// Where group 1 falls inside a match is not something RE2 can tell us the
// PostgreSQL way: RE2 picks submatches by leftmost-first (Perl) priority,
// while pg_regexec finds the leftmost match, makes it as long (or as short,
// for a non-greedy RE) as possible, and then "dissects" it top-down along
// the subre tree, each node taking the longest or shortest share its
// preference asks for (regexec.c find, cdissect, ccondissect,
// crevcondissect, caltdissect, citerdissect, creviterdissect).
// For example, on "xY1234Z", `Y*?([0-9]{1,3})`gives group 1 = "1" in
// PostgreSQL and "123" in RE2.
//
// regexec.c tries split points one by one and asks its DFAs about each,
// which costs a pass over the rest of the string per split point: O(n²)
// on a long subject (PostgreSQL's own regexp_match takes tens of
// milliseconds on 32 KB), and more for an iteration that backtracks. Here
// each dissection step is one or two passes over its window instead, each
// on a lazily built DFA (nfa.go):
//
//   - a concatenation runs the left part forward from begin and the right
//     part backward from end; the split point is the last (or, for a
//     non-greedy left part, the first) position in both sets, which is the
//     one regexec.c's search would stop at;
//   - an iteration computes in one backward pass where a piece may end so
//     that the rest still completes (what citerdissect's backtracking
//     would find out), and then walks the pieces in regexec.c's order
//     without backtracking (iter).
//
// The answers are those of the previous, quadratic matcher, kept in
// match_ref_test.go and compared by FuzzGroup1Linear and the recorded
// PostgreSQL cases. Every pass counts its work and stops when the context
// is done, so the authentication deadline bounds a lookup whatever the
// pattern.

// checkEvery is how much simulation work (threads stepped) passes between
// two looks at the context: a few microseconds.
const checkEvery = 1 << 12

type matcher struct {
	ctx   context.Context
	err   error // the context's error, once it is done; results are void then
	work  int   // threads stepped since the last look at the context
	steps int   // threads stepped in all (tests check it grows linearly)
	s     string
	n     int
	caps  map[int][2]int
	span  [2]int // the whole match, once find succeeded
	dfas  map[*prog]*dfa
	// dfaBudget bounds each dfa's cache (dfaBudget, or less in tests).
	dfaBudget int
}

func newMatcher(ctx context.Context, s string) *matcher {
	return &matcher{ctx: ctx, s: s, n: len(s), caps: map[int][2]int{}, dfaBudget: dfaBudget}
}

// tick accounts for n units of work and reports whether to go on.
func (m *matcher) tick(n int) bool {
	if m.err != nil {
		return false
	}
	m.work += n
	m.steps += n
	if m.work >= checkEvery {
		m.work = 0
		if err := m.ctx.Err(); err != nil {
			m.err = err
			return false
		}
	}
	return true
}

// ends returns where t can end, at most at hi, when it starts at i.
func (m *matcher) ends(t *subre, i, hi int) spanSet { return m.run(t.fwd, i, hi, nil) }

// starts returns where t can start, at least at lo, when it ends at j.
func (m *matcher) starts(t *subre, j, lo int) spanSet { return m.run(t.rev, j, lo, nil) }

// exact reports whether t matches s[i:j] exactly.
func (m *matcher) exact(t *subre, i, j int) bool { return m.ends(t, i, j).has(j) }

// find mirrors regexec.c find: the leftmost match, longest unless the
// whole RE prefers shorter, then its dissection. (exec finds the leftmost
// start in one backward pass and calls findAt directly; find, quadratic,
// is kept to cross-check that in tests on short subjects.)
func (m *matcher) find(tree *subre) (map[int][2]int, bool) {
	for begin := 0; begin <= m.n && m.err == nil; begin++ {
		if m.findAt(tree, begin) {
			return m.caps, true
		}
	}
	return nil, false
}

// findAt matches and dissects a match starting at begin, if there is one.
func (m *matcher) findAt(tree *subre, begin int) bool {
	var end int
	if tree.flags&fShorter != 0 {
		end = m.run(tree.fwd, begin, m.n, anyPos).first()
	} else {
		end = m.run(tree.fwd, begin, m.n, nil).last()
	}
	if end < 0 || m.err != nil {
		return false
	}
	m.span = [2]int{begin, end}
	m.dissect(tree, begin, end)
	return m.err == nil
}

// dissect mirrors regexec.c cdissect for a tree without back-references,
// where every DFA-approved split also dissects successfully.
func (m *matcher) dissect(t *subre, begin, end int) {
	if m.err != nil {
		return
	}
	switch t.op {
	case '.':
		// ccondissect tries mid from end down (crevcondissect: from begin
		// up) and stops at the first where the left part matches
		// s[begin:mid] and the right part s[mid:end].
		left, right := t.child, t.child.sibling
		l := m.ends(left, begin, end)
		r := m.starts(right, end, begin)
		if m.err != nil {
			return
		}
		var mid int
		if left.flags&fShorter != 0 {
			mid = firstCommon(l, r)
		} else {
			mid = lastCommon(l, r)
		}
		if mid >= 0 {
			m.dissect(left, begin, mid)
			m.dissect(right, mid, end)
		}
	case '|': // caltdissect
		for c := t.child; c != nil; c = c.sibling {
			if m.exact(c, begin, end) {
				m.dissect(c, begin, end)
				break
			}
		}
	case '*':
		m.iter(t, begin, end)
	case '(':
		m.dissect(t.child, begin, end)
	}
	if t.capno > 0 && m.err == nil {
		m.caps[t.capno] = [2]int{begin, end}
	}
}

// zap clears the captures inside t (zaptreesubs).
func (m *matcher) zap(t *subre) {
	if t.capno > 0 {
		delete(m.caps, t.capno)
	}
	for c := t.child; c != nil; c = c.sibling {
		m.zap(c)
	}
}

// iter mirrors regexec.c citerdissect (greedy pieces) and creviterdissect
// (non-greedy pieces). Both search depth-first for a division of
// s[begin:end] into pieces, piece k starting where piece k-1 ended, at
// most max_matches of them (t.max, and never more than the bytes); each
// tries the candidate ends of piece k in order (longest first, or
// shortest first) and takes the first from which the rest can be
// completed, backtracking otherwise. The captures are those of the last
// piece.
//
// parseqatom gives an iteration node only to x* and x{0,n} (x{m,n} with
// m > 0 becomes x{m-1,n-1}x, so that the captures are in the last x), so
// min_matches is 1. Then a zero-length piece is never a candidate, except
// as the only piece of an empty window, and a candidate end e of piece k
// starting at p < e is valid when e == end, or when the pieces from k+1
// on can divide s[e:end] within the count left. iter computes what that
// needs in one backward pass, and then follows the valid candidate the
// search picks at each step, which is the search's answer without its
// backtracking:
//
//   - unbounded (x*): a piece may end at e < end when s[e:end] divides into
//     pieces at all. The pass records for every p the end the search picks,
//     and the walk is one lookup per piece;
//   - bounded (x{0,n}, n <= 255): the pass records, for every p, the least
//     number of pieces s[p:end] divides into, and each of the at most n
//     steps of the walk runs the piece forward once.
func (m *matcher) iter(t *subre, begin, end int) {
	lazy := t.child.flags&fShorter != 0
	if t.min > 1 {
		// Never built (see above); refuse rather than place captures by
		// rules this does not implement.
		m.err = errIterMin
		return
	}
	child := t.child
	if begin == end {
		// citerdissect: one empty piece if the child can match here
		// (captured); creviterdissect: zero pieces (nothing captured).
		if (!lazy || t.min > 0) && m.exact(child, end, end) {
			m.zap(child)
			m.dissect(child, end, end)
		}
		return
	}
	p := begin
	if t.max == dupInf {
		best := m.bestEnds(child, begin, end, lazy)
		for m.err == nil {
			e := int(best[p-begin])
			if e < 0 {
				return // the search fails: nothing is captured
			}
			if e == end {
				break
			}
			p = e
		}
	} else {
		maxm := min(t.max, end-begin)
		need := m.pieceCounts(child, begin, end, maxm)
		for k := 1; m.err == nil; k++ {
			e := m.pickEnd(child, p, end, lazy, func(e int) bool {
				return e == end || k < maxm && int(need[e-begin]) <= maxm-k
			})
			if e < 0 {
				return
			}
			if e == end {
				break
			}
			p = e
		}
	}
	if m.err == nil {
		m.zap(child)
		m.dissect(child, p, end)
	}
}

// errIterMin is iter's refusal of an iteration node that needs more than
// one piece (a bug in the parser if ever seen).
var errIterMin = errors.New("internal error: iteration with a minimum count")

// pickEnd returns the end the search picks for a piece starting at p:
// the greatest (or, lazy, the least) e > p where the piece can end and
// valid(e) holds, or -1. A lazy pick stops the piece's run at the first
// such e, so that a walk of short pieces reads each byte about once.
func (m *matcher) pickEnd(child *subre, p, end int, lazy bool, valid func(e int) bool) int {
	if lazy {
		e := -1
		m.run(child.fwd, p, end, func(pos int) bool {
			if pos > p && valid(pos) {
				e = pos
				return true
			}
			return false
		})
		if m.err != nil {
			return -1
		}
		return e
	}
	ends := m.ends(child, p, end)
	if m.err != nil {
		return -1
	}
	for w := len(ends.w) - 1; w >= 0; w-- {
		for x := ends.w[w]; x != 0; {
			b := 63 - bits.LeadingZeros64(x)
			x &^= 1 << b
			if e := ends.lo + w*64 + b; e > p && valid(e) {
				return e
			}
		}
	}
	return -1
}

// noPieces marks a position from which no division exists.
const noPieces = int32(1 << 30)

// bestEnds returns, for each p in [begin, end), the end the search picks
// for an unbounded iteration's piece starting at p: the greatest (lazy:
// the least) e > p where the piece can end, with e == end or s[e:end]
// divisible into pieces; -1 when there is none. One backward pass: a piece
// is started, in reverse, from every such e, and each thread carries the
// e it started from.
func (m *matcher) bestEnds(child *subre, begin, end int, lazy bool) []int32 {
	best := make([]int32, end-begin+1)
	better := func(a, b int32) bool { return a > b }
	if lazy {
		better = func(a, b int32) bool { return a < b }
	}
	m.piecePass(child.rev, begin, end, better, func(q int, has bool, e int32) (bool, int32) {
		if q == end {
			best[q-begin] = -1 // never asked: a walk stops at end
			return true, int32(end)
		}
		if !has {
			best[q-begin] = -1
			return false, 0
		}
		best[q-begin] = e
		return true, int32(q)
	})
	return best
}

// pieceCounts returns, for each p in [begin, end], the least number of
// non-empty pieces s[p:end] divides into (0 at end), or noPieces when it
// does not or needs more than maxm. One backward pass: a piece is
// started, in reverse, from every position that divides, carrying its
// count.
func (m *matcher) pieceCounts(child *subre, begin, end, maxm int) []int32 {
	need := make([]int32, end-begin+1)
	less := func(a, b int32) bool { return a < b }
	m.piecePass(child.rev, begin, end, less, func(q int, has bool, v int32) (bool, int32) {
		switch {
		case q == end:
			need[q-begin] = 0
			return true, 0
		case has && int(v)+1 <= maxm:
			need[q-begin] = v + 1
			return true, v + 1
		default:
			need[q-begin] = noPieces
			return false, 0
		}
	})
	return need
}

// piecePass runs a piece's reversed program rev from end down to begin.
// At each position q, visit is told whether a piece match that began (in
// reverse) at a higher position ends at q, and if so the best value such
// a match carries; it answers whether to begin one at q, and with which
// value. Each thread carries the value it began with, and a state reached
// twice at one position keeps the better (a later position can do no
// better than with it). A match of zero length at q is not reported.
func (m *matcher) piecePass(rev *prog, begin, end int, better func(a, b int32) bool,
	visit func(q int, has bool, v int32) (start bool, val int32)) {
	s := newSim(rev)
	for q := end; q >= begin; q-- {
		// s.cur holds the threads stepped over s[q] from q+1, with their
		// closures at q; s.hasMatch says whether one reached iMatch.
		if start, v := visit(q, s.hasMatch, s.matchOrig); start {
			s.closureOrig(rev.start, posFlags(m.s, q), v, better)
		}
		if q == begin || !m.tick(len(s.cur)+1) {
			return
		}
		// Step over s[q-1] to position q-1, each thread keeping the
		// value it has now.
		c := m.s[q-1]
		s.stepOrig = s.stepOrig[:0]
		for _, pc := range s.cur {
			s.stepOrig = append(s.stepOrig, s.orig[pc])
		}
		s.gen++
		s.hasMatch = false
		s.next, s.cur = s.cur, s.next[:0]
		fl := posFlags(m.s, q-1)
		for i, pc := range s.next {
			in := &rev.inst[pc]
			if in.set.has(c) {
				o := s.stepOrig[i]
				if s.closureOrig(in.out, fl, o, better) && (!s.hasMatch || better(o, s.matchOrig)) {
					s.hasMatch, s.matchOrig = true, o
				}
			}
		}
	}
}

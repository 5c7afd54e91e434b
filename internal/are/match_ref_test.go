package are

// The matcher as it was before end sets were computed once per window:
// for each split point it ran the sub-expression again over the whole
// string, which is quadratic in the subject's length. It is kept, unused
// by the package, as the reference the fuzz target and the recorded cases
// compare the linear matcher with: its search order is a direct
// transcription of regexec.c's, so where the two agree, the new one
// answers what PostgreSQL answers.

// refPosSet is a set of positions 0..len(s).
type refPosSet []uint64

func newRefPosSet(n int) refPosSet { return make(refPosSet, n/64+1) }
func (p refPosSet) add(i int)      { p[i>>6] |= 1 << (i & 63) }
func (p refPosSet) has(i int) bool { return p[i>>6]&(1<<(i&63)) != 0 }
func (p refPosSet) or(q refPosSet) {
	for i := range p {
		p[i] |= q[i]
	}
}
func (p refPosSet) clone() refPosSet { return append(refPosSet(nil), p...) }
func (p refPosSet) empty() bool {
	for _, w := range p {
		if w != 0 {
			return false
		}
	}
	return true
}
func (p refPosSet) subsetOf(q refPosSet) bool {
	for i := range p {
		if p[i]&^q[i] != 0 {
			return false
		}
	}
	return true
}

type refMatcher struct {
	s    string
	n    int
	memo map[*subre]map[int]refPosSet
	caps map[int][2]int
	span [2]int // the whole match, once find succeeded
}

func newRefMatcher(s string) *refMatcher {
	return &refMatcher{s: s, n: len(s), memo: map[*subre]map[int]refPosSet{}, caps: map[int][2]int{}}
}

// step returns the positions where n can end when it starts at any
// position of in.
func (m *refMatcher) step(n *node, in refPosSet) refPosSet {
	out := newRefPosSet(m.n)
	switch n.op {
	case nSet:
		for i := 0; i < m.n; i++ {
			if in.has(i) && n.set.has(m.s[i]) {
				out.add(i + 1)
			}
		}
	case nEmpty:
		out.or(in)
	case nConcat:
		cur := in
		for _, sub := range n.subs {
			cur = m.step(sub, cur)
		}
		out.or(cur)
	case nAlt:
		for _, sub := range n.subs {
			out.or(m.step(sub, in))
		}
	case nRepeat:
		cur := in
		if n.min == 0 {
			out.or(in)
		}
		for k := 1; n.max == dupInf || k <= n.max; k++ {
			cur = m.step(n.subs[0], cur)
			if cur.empty() {
				break
			}
			if k >= n.min {
				if n.max == dupInf && cur.subsetOf(out) {
					break // closed: nothing new can appear
				}
				out.or(cur)
			}
		}
	case nBOS, nEOS, nBOL, nEOL:
		for i := 0; i <= m.n; i++ {
			if in.has(i) && m.anchor(n.op, i) {
				out.add(i)
			}
		}
	}
	return out
}

func (m *refMatcher) anchor(op, i int) bool {
	switch op {
	case nBOS:
		return i == 0
	case nEOS:
		return i == m.n
	case nBOL:
		return i == 0 || m.s[i-1] == '\n'
	default: // nEOL
		return i == m.n || m.s[i] == '\n'
	}
}

// ends returns where t can end when it starts at i.
func (m *refMatcher) ends(t *subre, i int) refPosSet {
	byStart := m.memo[t]
	if byStart == nil {
		byStart = map[int]refPosSet{}
		m.memo[t] = byStart
	}
	if e, ok := byStart[i]; ok {
		return e
	}
	in := newRefPosSet(m.n)
	in.add(i)
	e := m.step(t.syntax(), in)
	byStart[i] = e
	return e
}

// longest is rege_dfa.c longest: the last end of t from start, at most stop.
func (m *refMatcher) longest(t *subre, start, stop int) int {
	e := m.ends(t, start)
	for j := stop; j >= start; j-- {
		if e.has(j) {
			return j
		}
	}
	return -1
}

// shortest is rege_dfa.c shortest: the first end of t from start within
// [min, max].
func (m *refMatcher) shortest(t *subre, start, min, max int) int {
	e := m.ends(t, start)
	for j := min; j <= max; j++ {
		if e.has(j) {
			return j
		}
	}
	return -1
}

func (m *refMatcher) exact(t *subre, i, j int) bool { return m.ends(t, i).has(j) }

// find mirrors regexec.c find: the leftmost match, longest unless the
// whole RE prefers shorter, then its dissection. (exec gets the leftmost
// start from RE2 and calls findAt directly; find is kept to cross-check
// that in tests.)
func (m *refMatcher) find(tree *subre) (map[int][2]int, bool) {
	for begin := 0; begin <= m.n; begin++ {
		if m.findAt(tree, begin) {
			return m.caps, true
		}
	}
	return nil, false
}

// findAt matches and dissects a match starting at begin, if there is one.
func (m *refMatcher) findAt(tree *subre, begin int) bool {
	var end int
	if tree.flags&fShorter != 0 {
		end = m.shortest(tree, begin, begin, m.n)
	} else {
		end = m.longest(tree, begin, m.n)
	}
	if end < 0 {
		return false
	}
	m.span = [2]int{begin, end}
	m.dissect(tree, begin, end)
	return true
}

// dissect mirrors regexec.c cdissect for a tree without back-references,
// where every DFA-approved split also dissects successfully.
func (m *refMatcher) dissect(t *subre, begin, end int) {
	switch t.op {
	case '.':
		left, right := t.child, t.child.sibling
		if left.flags&fShorter != 0 { // crevcondissect
			for mid := begin; mid <= end; mid++ {
				if m.exact(left, begin, mid) && m.exact(right, mid, end) {
					m.dissect(left, begin, mid)
					m.dissect(right, mid, end)
					break
				}
			}
		} else { // ccondissect
			for mid := end; mid >= begin; mid-- {
				if m.exact(left, begin, mid) && m.exact(right, mid, end) {
					m.dissect(left, begin, mid)
					m.dissect(right, mid, end)
					break
				}
			}
		}
	case '|': // caltdissect
		for c := t.child; c != nil; c = c.sibling {
			if m.exact(c, begin, end) {
				m.dissect(c, begin, end)
				break
			}
		}
	case '*':
		if t.child.flags&fShorter != 0 {
			m.creviter(t, begin, end)
		} else {
			m.citer(t, begin, end)
		}
	case '(':
		m.dissect(t.child, begin, end)
	}
	if t.capno > 0 {
		m.caps[t.capno] = [2]int{begin, end}
	}
}

// zap clears the captures inside t (zaptreesubs).
func (m *refMatcher) zap(t *subre) {
	if t.capno > 0 {
		delete(m.caps, t.capno)
	}
	for c := t.child; c != nil; c = c.sibling {
		m.zap(c)
	}
}

// refIterBounds computes citerdissect's min_matches and max_matches.
func refIterBounds(t *subre, begin, end int) (minm, maxm int) {
	minm = t.min
	if minm <= 0 {
		minm = 1
	}
	maxm = end - begin
	if t.max != dupInf && maxm > t.max {
		maxm = t.max
	}
	if maxm < minm {
		maxm = minm
	}
	return minm, maxm
}

// citer mirrors regexec.c citerdissect: pieces as long as possible, a
// zero-length piece only when needed to reach the minimum count; the
// captures are those of the last piece. The search is the same
// depth-first order, written recursively, with failed (piece, start)
// states remembered so that it stays polynomial.
func (m *refMatcher) citer(t *subre, begin, end int) {
	minm, maxm := refIterBounds(t, begin, end)
	failed := map[[2]int]bool{}
	var last [2]int
	var try func(k, p int) bool
	try = func(k, p int) bool {
		if failed[[2]int{k, p}] {
			return false
		}
		limit := end
		for {
			e := m.longest(t.child, p, limit)
			if e < 0 {
				break
			}
			if e != end {
				if k < maxm && !(e == p && (k >= minm || minm-k < end-e)) && try(k+1, e) {
					return true
				}
				if k >= maxm {
					break
				}
			} else if k >= minm {
				last = [2]int{p, e}
				return true
			}
			// shorten the k'th piece
			if e > p {
				limit = e - 1
				if limit > p || (k < minm && minm-k >= end-p) {
					continue
				}
			}
			break
		}
		failed[[2]int{k, p}] = true
		return false
	}
	if try(1, begin) {
		m.zap(t.child)
		m.dissect(t.child, last[0], last[1])
	}
	// else: zero repetitions of an empty match; nothing is captured
}

// creviter mirrors regexec.c creviterdissect: pieces as short as possible.
func (m *refMatcher) creviter(t *subre, begin, end int) {
	minm := t.min
	if minm <= 0 {
		if begin == end {
			return
		}
		minm = 1
	}
	_, maxm := refIterBounds(t, begin, end)
	if maxm < minm {
		maxm = minm
	}
	failed := map[[2]int]bool{}
	var last [2]int
	var try func(k, p int) bool
	try = func(k, p int) bool {
		if failed[[2]int{k, p}] {
			return false
		}
		limit := p
		for {
			if limit == p && limit != end && (k >= minm || minm-k < end-limit) {
				limit++
			}
			if k >= maxm {
				limit = end
			}
			e := m.shortest(t.child, p, limit, end)
			if e < 0 {
				break
			}
			if e != end {
				if k >= maxm {
					break
				}
				if try(k+1, e) {
					return true
				}
			} else if k >= minm {
				last = [2]int{p, e}
				return true
			}
			if e < end {
				limit = e + 1
				continue
			}
			break
		}
		failed[[2]int{k, p}] = true
		return false
	}
	if try(1, begin) {
		m.zap(t.child)
		m.dissect(t.child, last[0], last[1])
	}
}

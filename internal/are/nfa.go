package are

import (
	"encoding/binary"
	"math/bits"
	"slices"
)

// A Thompson NFA per sub-expression, forward and reversed, so that the
// dissection can ask "where can t end when it starts at i" and "where can
// t start when it ends at j" for every answer at once in one pass over the
// window, as rege_dfa.c's DFAs let PostgreSQL do. Preference (greedy or
// not) plays no part here: the sets are the same, and the dissection picks
// from them.

// Instruction kinds.
const (
	iByte   = iota // consume one byte in set, go to out
	iSplit         // go to out and to out1
	iAssert        // the position has the flag in anchor: go to out
	iMatch         // the sub-expression is complete
)

type inst struct {
	op        uint8
	anchor    uint8    // iAssert only: the position flag that must be set
	set       *byteSet // iByte only: the node's set, shared
	out, out1 int32
}

// prog is one sub-expression's NFA. A reversed prog reads the subject
// from right to left; anchors keep their meaning, since they are judged
// at a position of the whole string either way.
type prog struct {
	inst  []inst
	start int32
	flags uint8 // the position flags any iAssert looks at
	// classes are the pattern's byte classes, shared by all its progs.
	*classes
}

// classes maps each byte to its class: bytes in the same class are in
// exactly the same sets of the pattern, so a DFA need not tell them
// apart.
type classes struct {
	class  [256]uint8
	nclass int
}

// compileProg builds n's NFA, reading left to right or, with reverse,
// right to left. bc are the byte classes of a pattern n is part of.
func compileProg(n *node, reverse bool, bc *classes) *prog {
	b := &progBuilder{reverse: reverse}
	match := b.emit(inst{op: iMatch})
	p := &prog{start: b.build(n, match), inst: b.inst, classes: bc}
	for _, in := range p.inst {
		if in.op == iAssert {
			p.flags |= in.anchor
		}
	}
	return p
}

// byteClasses returns the byte classes of n, splitting the bytes by each
// distinct set in turn: at most 256 classes.
func byteClasses(n *node) *classes {
	var sets []byteSet
	var walk func(n *node)
	walk = func(n *node) {
		if n.op == nSet && !slices.Contains(sets, n.set) {
			sets = append(sets, n.set)
		}
		for _, sub := range n.subs {
			walk(sub)
		}
	}
	walk(n)
	bc := &classes{nclass: 1}
	for _, set := range sets {
		// The new class of a byte: its old class, split by the set.
		var inID, outID [256]int16
		for i := range bc.nclass {
			inID[i], outID[i] = -1, -1
		}
		m := 0
		for c := range 256 {
			ids := &outID
			if set.has(byte(c)) {
				ids = &inID
			}
			old := bc.class[c]
			if ids[old] < 0 {
				ids[old] = int16(m)
				m++
			}
			bc.class[c] = uint8(ids[old])
		}
		bc.nclass = m
	}
	return bc
}

type progBuilder struct {
	inst    []inst
	reverse bool
}

func (b *progBuilder) emit(i inst) int32 {
	b.inst = append(b.inst, i)
	return int32(len(b.inst) - 1)
}

// build emits n followed by next and returns n's entry.
func (b *progBuilder) build(n *node, next int32) int32 {
	switch n.op {
	case nSet:
		return b.emit(inst{op: iByte, set: &n.set, out: next})
	case nEmpty:
		return next
	case nConcat:
		if b.reverse {
			for _, s := range n.subs {
				next = b.build(s, next)
			}
			return next
		}
		for i := len(n.subs) - 1; i >= 0; i-- {
			next = b.build(n.subs[i], next)
		}
		return next
	case nAlt:
		entry := b.build(n.subs[len(n.subs)-1], next)
		for i := len(n.subs) - 2; i >= 0; i-- {
			entry = b.emit(inst{op: iSplit, out: b.build(n.subs[i], next), out1: entry})
		}
		return entry
	case nRepeat:
		cur := next
		if n.max == dupInf {
			loop := b.emit(inst{op: iSplit, out1: next})
			b.inst[loop].out = b.build(n.subs[0], loop)
			cur = loop
		} else {
			// x{0,k}: (x(x(…)?)?)?, innermost first.
			for i := n.min; i < n.max; i++ {
				cur = b.emit(inst{op: iSplit, out: b.build(n.subs[0], cur), out1: next})
			}
		}
		for i := 0; i < n.min; i++ {
			cur = b.build(n.subs[0], cur)
		}
		return cur
	default: // nBOS, nEOS, nBOL, nEOL
		return b.emit(inst{op: iAssert, anchor: anchorFlag(n.op), out: next})
	}
}

// Position flags: what the anchors can see of a position of the subject.
const (
	atBOS uint8 = 1 << iota // the start of the string
	atEOS                   // the end of the string
	atBOL                   // the start, or just after a newline
	atEOL                   // the end, or just before a newline
)

// anchorFlag is the flag an anchor node (nBOS, nEOS, nBOL, nEOL) needs.
func anchorFlag(op int) uint8 {
	switch op {
	case nBOS:
		return atBOS
	case nEOS:
		return atEOS
	case nBOL:
		return atBOL
	default:
		return atEOL
	}
}

// posFlags returns the flags of position i of s.
func posFlags(s string, i int) uint8 {
	var f uint8
	if i == 0 {
		f |= atBOS | atBOL
	} else if s[i-1] == '\n' {
		f |= atBOL
	}
	if i == len(s) {
		f |= atEOS | atEOL
	} else if s[i] == '\n' {
		f |= atEOL
	}
	return f
}

// compileProgs gives every node of the tree its two programs, once, at
// Compile time: a Regexp is shared by concurrent lookups and must not
// change after Compile.
func compileProgs(t *subre, bc *classes) {
	for ; t != nil; t = t.sibling {
		n := t.syntax()
		t.fwd, t.rev = compileProg(n, false, bc), compileProg(n, true, bc)
		compileProgs(t.child, bc)
	}
}

// spanSet is a set of positions lo..hi of the subject.
type spanSet struct {
	lo, hi int
	w      []uint64
}

func newSpanSet(lo, hi int) spanSet {
	return spanSet{lo: lo, hi: hi, w: make([]uint64, (hi-lo)/64+1)}
}

func (s spanSet) add(i int) { i -= s.lo; s.w[i>>6] |= 1 << (i & 63) }

func (s spanSet) has(i int) bool {
	if i < s.lo || i > s.hi {
		return false
	}
	i -= s.lo
	return s.w[i>>6]&(1<<(i&63)) != 0
}

// last returns the greatest position in s, or -1.
func (s spanSet) last() int { return lastCommon(s, s) }

// first returns the least position in s, or -1.
func (s spanSet) first() int { return firstCommon(s, s) }

// lastCommon returns the greatest position in both a and b (which share lo
// and hi), or -1.
func lastCommon(a, b spanSet) int {
	for i := len(a.w) - 1; i >= 0; i-- {
		if x := a.w[i] & b.w[i]; x != 0 {
			return a.lo + i*64 + 63 - bits.LeadingZeros64(x)
		}
	}
	return -1
}

// firstCommon returns the least position in both a and b, or -1.
func firstCommon(a, b spanSet) int {
	for i := range a.w {
		if x := a.w[i] & b.w[i]; x != 0 {
			return a.lo + i*64 + bits.TrailingZeros64(x)
		}
	}
	return -1
}

// sim is the scratch space of one NFA simulation.
type sim struct {
	p     *prog
	mark  []uint32 // mark[i] == gen: i was reached at this position
	gen   uint32
	cur   []int32 // iByte states alive at this position
	next  []int32
	stack []int32

	// For origin-tracking runs (piecePass): the best origin that reached
	// each state at this position, the origins of the states being
	// stepped, and the best origin that reached iMatch.
	orig      []int32
	stepOrig  []int32
	hasMatch  bool
	matchOrig int32
}

func newSim(p *prog) *sim {
	n := len(p.inst)
	return &sim{p: p, mark: make([]uint32, n), orig: make([]int32, n), gen: 1}
}

// closure adds to s.cur the iByte states reachable from pc without
// consuming input at a position whose flags are fl, and reports whether
// iMatch is.
func (s *sim) closure(pc int32, fl uint8) (matched bool) {
	s.stack = append(s.stack[:0], pc)
	for len(s.stack) > 0 {
		pc := s.stack[len(s.stack)-1]
		s.stack = s.stack[:len(s.stack)-1]
		if s.mark[pc] == s.gen {
			continue
		}
		s.mark[pc] = s.gen
		in := &s.p.inst[pc]
		switch in.op {
		case iByte:
			s.cur = append(s.cur, pc)
		case iSplit:
			s.stack = append(s.stack, in.out1, in.out)
		case iAssert:
			if fl&in.anchor != 0 {
				s.stack = append(s.stack, in.out)
			}
		case iMatch:
			matched = true
		}
	}
	return matched
}

// closureOrig is closure for threads that carry an origin: a state already
// reached at this position is expanded again only when origin is better
// than the one it has, so every state ends up with the best origin that
// reaches it. It reports whether iMatch is reachable from pc with this
// origin, through states that origin improved.
func (s *sim) closureOrig(pc int32, fl uint8, origin int32, better func(a, b int32) bool) (matched bool) {
	s.stack = append(s.stack[:0], pc)
	for len(s.stack) > 0 {
		pc := s.stack[len(s.stack)-1]
		s.stack = s.stack[:len(s.stack)-1]
		in := &s.p.inst[pc]
		if in.op == iMatch {
			matched = true
			continue
		}
		if s.mark[pc] == s.gen {
			if !better(origin, s.orig[pc]) {
				continue
			}
		} else {
			s.mark[pc] = s.gen
			if in.op == iByte {
				s.cur = append(s.cur, pc)
			}
		}
		s.orig[pc] = origin
		switch in.op {
		case iSplit:
			s.stack = append(s.stack, in.out1, in.out)
		case iAssert:
			if fl&in.anchor != 0 {
				s.stack = append(s.stack, in.out)
			}
		}
	}
	return matched
}

// A dfa is a prog's NFA with its state sets cached as they are met, as
// RE2 and PostgreSQL's rege_dfa.c do: a step from a cached set on a byte
// already seen is one table lookup. The table has a column per byte class
// of the prog (bytes that no set of the prog tells apart). The anchors
// make a step depend on the flags of the position it reaches too; steps to
// a position with none of the flags the prog looks at (nearly all of
// them) are in the table, the others in a map. The cache is private to
// one lookup and bounded (matcher.dfaBudget): past the bound it is emptied, and
// the states met from then on are built again.
type dfa struct {
	p      *prog
	sim    *sim
	states []*dstate
	index  map[string]int32
	key    []byte
	bytes  int // memory the states hold, roughly
	resets int // times the cache was emptied
	budget int // the most memory the states may hold
}

type dstate struct {
	insts []int32 // the iByte states, sorted
	match bool    // iMatch is in the closure
	next  []int32 // by byte class: the next state's index + 1, 0 if not built
	nextF map[uint16]int32
}

// dfaBudget bounds the memory of one dfa's cache. A state costs a few
// hundred bytes for the patterns pg_ident.conf lines use; patterns with
// large counted repetitions have bigger ones, and more of them.
const dfaBudget = 1 << 20

func newDFA(p *prog, budget int) *dfa {
	return &dfa{p: p, sim: newSim(p), index: map[string]int32{}, budget: budget}
}

// intern returns the cached state for s.cur and matched (index + 1).
func (d *dfa) intern(matched bool) int32 {
	cur := d.sim.cur
	slices.Sort(cur)
	d.key = d.key[:0]
	if matched {
		d.key = append(d.key, 1)
	} else {
		d.key = append(d.key, 0)
	}
	for _, pc := range cur {
		d.key = binary.LittleEndian.AppendUint32(d.key, uint32(pc))
	}
	if i, ok := d.index[string(d.key)]; ok {
		return i
	}
	size := 2*len(d.key) + 4*d.p.nclass + 128
	if d.bytes+size > d.budget {
		clear(d.index)
		clear(d.states)
		d.states, d.bytes = d.states[:0], 0
		d.resets++
	}
	d.bytes += size
	d.states = append(d.states, &dstate{insts: slices.Clone(cur), match: matched, next: make([]int32, d.p.nclass)})
	i := int32(len(d.states))
	d.index[string(d.key)] = i
	return i
}

// start returns the state at a position with flags fl, before any byte.
func (d *dfa) start(fl uint8) int32 {
	d.sim.gen++
	d.sim.cur = d.sim.cur[:0]
	return d.intern(d.sim.closure(d.p.start, fl&d.p.flags))
}

// step returns the state after reading c from state i, at a position
// with flags fl (already masked with the prog's).
func (d *dfa) step(i int32, c byte, fl uint8) int32 {
	st := d.states[i-1]
	class := d.p.class[c]
	if fl == 0 {
		if j := st.next[class]; j != 0 {
			return j
		}
	} else if j, ok := st.nextF[uint16(class)<<8|uint16(fl)]; ok {
		return j
	}
	s := d.sim
	s.gen++
	s.cur = s.cur[:0]
	matched := false
	for _, pc := range st.insts {
		in := &d.p.inst[pc]
		if in.set.has(c) && s.closure(in.out, fl) {
			matched = true
		}
	}
	n := len(d.states)
	j := d.intern(matched)
	if len(d.states) < n {
		return j // the cache was emptied; st is gone
	}
	if fl == 0 {
		st.next[class] = j
	} else {
		if st.nextF == nil {
			st.nextF = map[uint16]int32{}
		}
		st.nextF[uint16(class)<<8|uint16(fl)] = j
	}
	return j
}

// dfa returns the lookup's cached automaton for p.
func (m *matcher) dfa(p *prog) *dfa {
	d := m.dfas[p]
	if d == nil {
		d = newDFA(p, m.dfaBudget)
		if m.dfas == nil {
			m.dfas = map[*prog]*dfa{}
		}
		m.dfas[p] = d
	}
	return d
}

// anyPos stops a run at its first position.
func anyPos(int) bool { return true }

// run simulates p from position from towards to (forward when to >=
// from, else backward) and returns the positions in between where p is
// complete: for a forward prog, the ends of matches starting at from; for
// a reversed one, the starts of matches ending at from. It stops at the
// first such position where stop (if not nil) says so, once no thread is
// alive, or when the context is done (m.err).
func (m *matcher) run(p *prog, from, to int, stop func(pos int) bool) spanSet {
	lo, hi, dir := from, to, 1
	if to < from {
		lo, hi, dir = to, from, -1
	}
	out := newSpanSet(lo, hi)
	d := m.dfa(p)
	pos := from
	if d.resets > maxResets {
		s := d.sim
		s.gen++
		s.cur = s.cur[:0]
		if s.closure(p.start, posFlags(m.s, pos)&p.flags) {
			out.add(pos)
			if stop != nil && stop(pos) {
				return out
			}
		}
		m.runNFA(s, pos, to, dir, stop, out)
		return out
	}
	st := d.start(posFlags(m.s, pos))
	budget := 0
	for {
		ds := d.states[st-1]
		if ds.match {
			out.add(pos)
			if stop != nil && stop(pos) {
				return out
			}
		}
		if pos == to || len(ds.insts) == 0 {
			return out
		}
		if budget--; budget < 0 {
			// Look at the context every 256 bytes, not on each.
			if !m.tick(256) {
				return out
			}
			budget = 255
		}
		var c byte
		if dir > 0 {
			c = m.s[pos]
		} else {
			c = m.s[pos-1]
		}
		pos += dir
		var fl uint8
		if p.flags != 0 {
			fl = posFlags(m.s, pos) & p.flags
		}
		if fl == 0 {
			if j := ds.next[p.class[c]]; j != 0 {
				st = j
				continue
			}
		}
		n := len(d.states)
		st = d.step(st, c, fl)
		if len(d.states) != n {
			// A new state cost a pass over the NFA.
			if !m.tick(len(d.states[st-1].insts) + 1) {
				return out
			}
			if d.resets > maxResets {
				// The cache keeps filling up: new states at nearly every
				// byte. Simulate the NFA from here instead, as RE2 does.
				ns := d.states[st-1]
				if ns.match {
					out.add(pos)
					if stop != nil && stop(pos) {
						return out
					}
				}
				d.sim.cur = append(d.sim.cur[:0], ns.insts...)
				m.runNFA(d.sim, pos, to, dir, stop, out)
				return out
			}
		}
	}
}

// maxResets is how many times a dfa's cache may be emptied before runs on
// it simulate the NFA instead.
const maxResets = 3

// runNFA continues a simulation from the threads in s.cur at pos, as run
// does, adding to out.
func (m *matcher) runNFA(s *sim, pos, to, dir int, stop func(int) bool, out spanSet) {
	p := s.p
	for pos != to && len(s.cur) > 0 {
		if !m.tick(len(s.cur)) {
			return
		}
		var c byte
		if dir > 0 {
			c = m.s[pos]
		} else {
			c = m.s[pos-1]
		}
		pos += dir
		fl := posFlags(m.s, pos) & p.flags
		s.gen++
		s.next, s.cur = s.cur, s.next[:0]
		matched := false
		for _, pc := range s.next {
			in := &p.inst[pc]
			if in.set.has(c) && s.closure(in.out, fl) {
				matched = true
			}
		}
		if matched {
			out.add(pos)
			if stop != nil && stop(pos) {
				return
			}
		}
	}
}

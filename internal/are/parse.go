package are

// Parser: regcomp.c parse, parsebranch, parseqatom, bracket, brackpart.
// It builds two things at once, as regcomp.c builds its NFA and its subre
// tree at once: a syntax tree (node) that says which byte strings match,
// and the subre tree that says how pg_regexec dissects a match to place
// the capture groups.

// byteSet is a set of bytes: one regex character in SQL_ASCII.
type byteSet [4]uint64

func (s *byteSet) add(c uint32) {
	if c < 256 {
		s[c>>6] |= 1 << (c & 63)
	}
}
func (s *byteSet) addRange(a, b uint32) {
	for c := a; c <= b && c < 256; c++ {
		s.add(c)
	}
}
func (s byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }
func (s *byteSet) union(o byteSet) {
	for i := range s {
		s[i] |= o[i]
	}
}
func (s byteSet) complement() byteSet {
	for i := range s {
		s[i] = ^s[i]
	}
	return s
}

// cclass returns a C-locale character class over bytes, as cclasscvec
// builds it for PG_REGEX_LOCALE_C (ctype tests only for c <= 127; cntrl,
// ascii, blank and xdigit hard-wired).
func cclass(cls int, icase bool) byteSet {
	if icase && (cls == ccLower || cls == ccUpper) {
		cls = ccAlpha
	}
	var s byteSet
	for c := uint32(0); c < 256; c++ {
		b := byte(c)
		alpha := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
		digit := '0' <= b && b <= '9'
		graph := 0x21 <= b && b <= 0x7e
		var in bool
		switch cls {
		case ccAlnum:
			in = alpha || digit
		case ccAlpha:
			in = alpha
		case ccASCII:
			in = b <= 0x7f
		case ccBlank:
			in = b == ' ' || b == '\t'
		case ccCntrl:
			in = b <= 0x1f || 0x7f <= b && b <= 0x9f
		case ccDigit:
			in = digit
		case ccGraph:
			in = graph
		case ccLower:
			in = 'a' <= b && b <= 'z'
		case ccPrint:
			in = graph || b == ' '
		case ccPunct:
			in = graph && !alpha && !digit
		case ccSpace:
			in = iscspace(b)
		case ccUpper:
			in = 'A' <= b && b <= 'Z'
		case ccXdigit:
			in = digit || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
		case ccWord:
			in = alpha || digit || b == '_'
		}
		if in {
			s.add(c)
		}
	}
	return s
}

func toLower(c uint32) uint32 {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
func toUpper(c uint32) uint32 {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// Syntax tree operators.
const (
	nSet    = iota // one byte from set
	nEmpty         // the empty string
	nConcat        // subs in sequence
	nAlt           // any of subs
	nRepeat        // sub[0] between min and max times (max dupInf: unbounded)
	nBOS           // \A, and ^ without newline sensitivity
	nEOS           // \Z, and $ without newline sensitivity
	nBOL           // ^ with (?n)/(?w): start, or after \n
	nEOL           // $ with (?n)/(?w): end, or before \n
)

type node struct {
	op       int
	set      byteSet
	subs     []*node
	min, max int
}

func concat(ns ...*node) *node {
	var out []*node
	for _, n := range ns {
		switch {
		case n == nil, n.op == nEmpty:
		case n.op == nConcat:
			out = append(out, n.subs...)
		default:
			out = append(out, n)
		}
	}
	switch len(out) {
	case 0:
		return &node{op: nEmpty}
	case 1:
		return out[0]
	}
	return &node{op: nConcat, subs: out}
}

func repeatNode(n *node, m, x int) *node {
	switch {
	case m == 1 && x == 1:
		return n
	case m == 0 && x == 0:
		return &node{op: nEmpty}
	}
	return &node{op: nRepeat, subs: []*node{n}, min: m, max: x}
}

// subre mirrors struct subre: a node of the tree that pg_regexec's
// cdissect walks. Only '=' nodes carry their own syntax; the others
// derive it from their children.
type subre struct {
	op      byte // '=', '.', '|', '*', '('
	flags   int
	capno   int
	min     int
	max     int
	child   *subre
	sibling *subre
	frag    *node // '=' only: what the node matches

	// fwd and rev are the node's NFA, reading forward and backward, for
	// the dissection (compileProgs).
	fwd, rev *prog

	// while a branch is being built (parsebranch), the atoms so far
	atoms []*node
}

// syntax returns what the subre matches.
func (t *subre) syntax() *node {
	switch t.op {
	case '=':
		if t.frag == nil {
			t.frag = concat(t.atoms...)
		}
		return t.frag
	case '.':
		return concat(t.child.syntax(), t.child.sibling.syntax())
	case '|':
		var alts []*node
		for c := t.child; c != nil; c = c.sibling {
			alts = append(alts, c.syntax())
		}
		return &node{op: nAlt, subs: alts}
	case '*':
		return repeatNode(t.child.syntax(), t.min, t.max)
	default: // '('
		return t.child.syntax()
	}
}

type parser struct {
	lexer
	subs map[int]bool // capture groups usable by a back-reference (v->subs)
}

// parse mirrors regcomp.c parse: branches joined by '|'.
func (p *parser) parse(stopper int, lacon bool) *subre {
	branches := &subre{op: '|', flags: fLonger}
	var last *subre
	for {
		branch := p.parsebranch(stopper, lacon, false)
		if p.err != 0 {
			return nil
		}
		if last == nil {
			branches.child = branch
		} else {
			last.sibling = branch
		}
		branches.flags |= up(branches.flags | branch.flags)
		last = branch
		if !p.eat('|') {
			break
		}
	}
	if !p.see(stopper) {
		p.fail(regEparen)
		return nil
	}
	if branches.child == last {
		return last
	}
	if !messy(branches.flags) {
		frag := branches.syntax()
		branches.child = nil
		branches.op = '='
		branches.frag = frag
	}
	return branches
}

// parsebranch mirrors regcomp.c parsebranch.
func (p *parser) parsebranch(stopper int, lacon, partial bool) *subre {
	t := &subre{op: '='}
	for !p.see('|') && !p.see(stopper) && !p.see(tEOS) {
		t = p.parseqatom(stopper, lacon, t)
		if p.err != 0 {
			return nil
		}
	}
	return t
}

// parseqatom mirrors regcomp.c parseqatom: one quantified atom or
// constraint, and, when the atom is "messy", the rest of the branch.
func (p *parser) parseqatom(stopper int, lacon bool, top *subre) *subre {
	var (
		atom     *subre // the atom's subtree, if it has one
		frag     *node  // the atom's syntax when it has no subtree
		subno    int
		atomtype = p.nexttype
		nl       = p.cflags&regNlanch != 0
	)
	constraint := func(n *node) *subre {
		top.atoms = append(top.atoms, n)
		p.nextTok()
		return top
	}
	switch atomtype {
	case '^':
		if nl {
			return constraint(&node{op: nBOL})
		}
		return constraint(&node{op: nBOS})
	case '$':
		if nl {
			return constraint(&node{op: nEOL})
		}
		return constraint(&node{op: nEOS})
	case tSbegin:
		return constraint(&node{op: nBOS})
	case tSend:
		return constraint(&node{op: nEOS})
	case '<', '>':
		p.refuse("word-boundary constraint (\\m, \\M, [[:<:]] or [[:>:]]) is not supported")
		return constraint(&node{op: nEmpty})
	case tWbdry, tNwbdry:
		p.refuse("word-boundary constraint (\\y or \\Y) is not supported")
		return constraint(&node{op: nEmpty})
	case tLacon:
		p.refuse("%s is not supported", laconNames[p.nextvalue])
		p.nextTok()
		p.parse(')', true)
		if p.err != 0 {
			return nil
		}
		p.nextTok()
		top.atoms = append(top.atoms, &node{op: nEmpty})
		return top
	case '*', '+', '?', '{':
		p.fail(regBadrpt)
		return top
	default:
		p.fail(regAssert)
		return top
	case ')':
		p.fail(regEparen)
		return top
	case tPlain:
		frag = p.onechr(p.nextvalue)
		p.nextTok()
	case '[':
		frag = p.bracket(p.nextvalue == 0)
		p.nextTok()
	case tCclassS:
		frag = &node{op: nSet, set: cclass(int(p.nextvalue), p.cflags&regIcase != 0)}
		p.nextTok()
	case tCclassC:
		frag = &node{op: nSet, set: cclass(int(p.nextvalue), p.cflags&regIcase != 0).complement()}
		p.nextTok()
	case '.':
		var s byteSet
		s = s.complement()
		if p.cflags&regNlstop != 0 {
			s[0] &^= 1 << '\n'
		}
		frag = &node{op: nSet, set: s}
		p.nextTok()
	case '(':
		capture := !lacon && p.nextvalue != 0
		if capture {
			p.nsubexp++
			subno = p.nsubexp
		} else {
			atomtype = tPlain
		}
		p.nextTok()
		atom = p.parse(')', lacon)
		if p.err != 0 {
			return nil
		}
		p.nextTok()
		if capture {
			if atom.capno == 0 {
				atom.flags |= fCap
				atom.capno = subno
			} else {
				atom = &subre{op: '(', flags: atom.flags | fCap, capno: subno, child: atom}
			}
			p.subs[subno] = true
		}
	case tBackref:
		if lacon || !p.subs[int(p.nextvalue)] {
			p.fail(regEsubreg)
			return nil
		}
		p.refuse("back-reference \\%d is not supported", p.nextvalue)
		frag = &node{op: nEmpty}
		p.nextTok()
	}

	// ...and an atom may be followed by a quantifier
	var m, n, qprefer int
	greedyPref := func() int {
		if p.nextvalue != 0 {
			return fLonger
		}
		return fShorter
	}
	switch p.nexttype {
	case '*':
		m, n, qprefer = 0, dupInf, greedyPref()
		p.nextTok()
	case '+':
		m, n, qprefer = 1, dupInf, greedyPref()
		p.nextTok()
	case '?':
		m, n, qprefer = 0, 1, greedyPref()
		p.nextTok()
	case '{':
		p.nextTok()
		m = p.scannum()
		if p.eat(',') {
			if p.see(tDigit) {
				n = p.scannum()
			} else {
				n = dupInf
			}
			if m > n {
				p.fail(regBadbr)
				return top
			}
			qprefer = greedyPref()
		} else {
			n = m
		}
		if !p.see('}') {
			p.fail(regBadbr)
			return top
		}
		p.nextTok()
	default:
		m, n = 1, 1
	}
	if p.err != 0 {
		return top
	}

	// {0} or {0,0} cancels everything
	if m == 0 && n == 0 {
		if atomtype == '(' {
			delete(p.subs, subno)
		}
		top.atoms = append(top.atoms, &node{op: nEmpty})
		return top
	}

	// if not a messy case, avoid hard part
	f := top.flags | qprefer
	if atom != nil {
		f |= atom.flags
	}
	if atomtype != '(' && atomtype != tBackref && !messy(up(f)) {
		if atom != nil {
			frag = atom.syntax()
		}
		top.atoms = append(top.atoms, repeatNode(frag, m, n))
		top.flags = f
		return top
	}

	// hard part: something messy
	if atom == nil {
		atom = &subre{op: '=', frag: frag}
	}
	prefix := &subre{op: '=', flags: top.flags, atoms: top.atoms}
	vacuous := len(top.atoms) == 0
	t := &subre{op: '.', flags: combine(qprefer, atom.flags)}
	atomPref := atom.flags & (fLonger | fShorter | fMixed)
	switch {
	case atomtype == tBackref:
		t.child = atom
	case m == 1 && n == 1 && (qprefer == 0 || atomPref == 0 || qprefer == atomPref):
		t.child = atom
	case atom.flags&(fCap|fBackr) == 0:
		t.child = &subre{op: '=', flags: combine(qprefer, atom.flags),
			frag: repeatNode(atom.syntax(), m, n)}
	case m > 0 && atom.flags&fBackr == 0:
		// x{m,n} becomes x{m-1,n-1}x, capturing in the last x only
		ff := combine(qprefer, atom.flags)
		nn := n
		if n != dupInf {
			nn = n - 1
		}
		pre := &subre{op: '=', flags: pref(ff), frag: repeatNode(atom.syntax(), m-1, nn)}
		pre.sibling = atom
		t.child = &subre{op: '.', flags: ff, child: pre}
	default:
		t.child = &subre{op: '*', flags: combine(qprefer, atom.flags), min: m, max: n, child: atom}
	}

	top.op = '.'
	top.atoms = nil
	top.child = prefix
	if !(p.see('|') || p.see(stopper) || p.see(tEOS)) {
		rest := p.parsebranch(stopper, lacon, true)
		if p.err != 0 {
			return nil
		}
		t.child.sibling = rest
		t.flags |= combine(t.flags, rest.flags)
		top.flags |= combine(top.flags, t.flags)
		prefix.sibling = t
		if vacuous {
			top.child = t.child
		} else if t.child.op == '=' && rest.op == '=' && !messy(up(t.child.flags|rest.flags)) {
			t.op = '='
			t.flags = combine(t.child.flags, rest.flags)
			t.frag = concat(t.child.syntax(), rest.syntax())
			t.child = nil
		}
	} else {
		prefix.sibling = t.child
		top.flags |= combine(top.flags, t.child.flags)
		if vacuous {
			return t.child
		}
	}
	return top
}

// scannum mirrors regcomp.c scannum.
func (p *parser) scannum() int {
	n := 0
	for p.see(tDigit) && n < dupMax {
		n = n*10 + int(p.nextvalue)
		p.nextTok()
	}
	if p.see(tDigit) || n > dupMax {
		p.fail(regBadbr)
		return 0
	}
	return n
}

// onechr mirrors regcomp.c onechr with allcases for (?i).
func (p *parser) onechr(c uint32) *node {
	var s byteSet
	if p.cflags&regIcase != 0 {
		s.add(toLower(c))
		s.add(toUpper(c))
	} else {
		s.add(c)
	}
	return &node{op: nSet, set: s}
}

// bracket mirrors regcomp.c bracket and cbracket.
func (p *parser) bracket(complemented bool) *node {
	var s byteSet
	icase := p.cflags&regIcase != 0
	var cclassc []int
	p.nextTok()
	for !p.see(']') && !p.see(tEOS) {
		p.brackpart(&s, &cclassc)
		if p.err != 0 {
			return &node{op: nEmpty}
		}
	}
	for _, cls := range cclassc {
		s.union(cclass(cls, icase).complement())
	}
	if complemented {
		if p.cflags&regNlstop != 0 {
			s.add('\n')
		}
		s = s.complement()
	}
	return &node{op: nSet, set: s}
}

// brackpart mirrors regcomp.c brackpart.
func (p *parser) brackpart(s *byteSet, cclassc *[]int) {
	icase := p.cflags&regIcase != 0
	var startc, endc uint32
	switch p.nexttype {
	case tRange:
		p.fail(regErange)
		return
	case tPlain:
		startc = p.nextvalue
		p.nextTok()
		if !p.see(tRange) {
			s.union(p.onechr(startc).set)
			return
		}
	case tCollel:
		name, ok := p.scanplain(regEcollate)
		if !ok {
			return
		}
		startc = p.element(name)
		if p.err != 0 {
			return
		}
	case tEclass:
		name, ok := p.scanplain(regEcollate)
		if !ok {
			return
		}
		c := p.element(name)
		if p.err != 0 {
			return
		}
		s.union(p.onechr(c).set) // eclass: in the C locale, just the character
		return
	case tCclass:
		name, ok := p.scanplain(regEctype)
		if !ok {
			return
		}
		for i, cn := range classNames {
			if cn == string(name) {
				s.union(cclass(i, icase))
				return
			}
		}
		p.fail(regEctype)
		return
	case tCclassS:
		s.union(cclass(int(p.nextvalue), icase))
		p.nextTok()
		return
	case tCclassC:
		*cclassc = append(*cclassc, int(p.nextvalue))
		p.nextTok()
		return
	default:
		p.fail(regAssert)
		return
	}

	if p.see(tRange) {
		p.nextTok()
		switch p.nexttype {
		case tPlain, tRange:
			endc = p.nextvalue
			p.nextTok()
		case tCollel:
			name, ok := p.scanplain(regEcollate)
			if !ok {
				return
			}
			endc = p.element(name)
			if p.err != 0 {
				return
			}
		default:
			p.fail(regErange)
			return
		}
	} else {
		endc = startc
	}
	// range()
	if startc > endc {
		p.fail(regErange)
		return
	}
	s.addRange(startc, endc)
	if icase {
		for c := startc; c <= endc && c < 256; c++ {
			s.add(toLower(c))
			s.add(toUpper(c))
		}
	}
}

// scanplain mirrors regcomp.c scanplain plus brackpart's INSIST: it
// returns the name between [. .] (or [= =], [: :]).
func (p *parser) scanplain(emptyErr int) ([]byte, bool) {
	startp := p.now
	p.nextTok()
	endp := p.now
	for p.see(tPlain) {
		endp = p.now
		p.nextTok()
	}
	p.nextTok()
	if p.err != 0 {
		return nil, false
	}
	if startp >= endp {
		p.fail(emptyErr)
		return nil, false
	}
	return p.pat[startp:endp], true
}

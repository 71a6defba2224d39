package policy

import "strings"

// trigger is the first rule hit of one action.
type trigger struct {
	set    bool
	rule   Rule
	effect uint16
	token  uint16
}

// evaluator is the state of one run of the table interpreter (docs/tables.md).
type evaluator struct {
	t          *Tables
	argv       []string
	node       uint16
	leafTok    uint16
	stray      int // token that made a node with children the command (0: none)
	help       bool
	firstBlock trigger
	firstAudit trigger
}

// Eval runs the table interpreter on argv (argv[0] is ignored) of binary bin. It is the
// reference the BPF interpreter is tested against.
func (t *Tables) Eval(bin Binary, argv []string) Result {
	entry := t.Entries[bin%NumBinaries]
	if len(argv) > MaxTokens || argvBytes(argv) > MaxArgvBytes {
		return Result{Verdict: VerdictUndecided, Node: entry}
	}
	e := evaluator{t: t, argv: argv, node: entry}
	return e.run()
}

func argvBytes(argv []string) int {
	n := 0
	for _, a := range argv {
		n += len(a) + 1
	}
	return n
}

func (e *evaluator) lookup(kind uint8, name string) (LexVal, bool) {
	k, ok := MakeLexKey(e.node, kind, name)
	if !ok {
		return LexVal{}, false
	}
	v, ok := e.t.Lexicon[k]
	return v, ok
}

func (e *evaluator) flags() uint16 { return e.t.Nodes[e.node].Flags }

func (e *evaluator) run() Result {
	argv := e.argv
	n := len(argv)
	dashdash, rootDD := false, false
	for i := 1; i < n; i++ {
		tok := argv[i]
		switch {
		case dashdash || rootDD || len(tok) < 2 || tok[0] != '-':
			rootDD = false
			if r, stop := e.positional(tok, i); stop {
				return r
			}
		case tok == "--":
			if e.flags()&NodeHasChildren == 0 {
				dashdash = true
			} else if e.flags()&NodeEntry != 0 {
				rootDD = true
			} else {
				return e.parseError(i)
			}
		case strings.HasPrefix(tok, "--"):
			name, val, eq := strings.Cut(tok[2:], "=")
			lv, ok := e.lookup(LexLong, name)
			if !ok {
				return e.parseError(i)
			}
			flagTok := i
			if lv.TakesValue != 0 {
				if !eq {
					if i+1 >= n {
						return e.parseError(i)
					}
					i++
					val = argv[i]
				}
				e.applyValue(lv.Target, val, flagTok)
			} else {
				b := true
				if eq {
					if b, ok = parseBool(val); !ok {
						return e.parseError(i)
					}
				}
				e.applyBool(lv.Target, b, flagTok)
			}
		default:
			consumed, ok := e.cluster(tok, i)
			if !ok {
				return e.parseError(i)
			}
			i += consumed
		}
	}
	return e.finish()
}

// cluster parses a shorthand group "-abc" at token i, returning how many following tokens it
// consumed as a value.
func (e *evaluator) cluster(tok string, i int) (consumed int, ok bool) {
	for j := 1; j < len(tok); {
		if strings.HasPrefix(tok[j:], "test.") {
			return 0, true // pflag ignores the rest of the group
		}
		if j >= 1+ClusterMax {
			return 0, false
		}
		lv, found := e.lookup(LexShort, tok[j:j+1])
		if !found {
			return 0, false
		}
		rest := tok[j+1:]
		if len(rest) >= 2 && rest[0] == '=' {
			if lv.TakesValue != 0 {
				e.applyValue(lv.Target, rest[1:], i)
			} else {
				b, okb := parseBool(rest[1:])
				if !okb {
					return 0, false
				}
				e.applyBool(lv.Target, b, i)
			}
			return 0, true
		}
		if lv.TakesValue == 0 {
			e.applyBool(lv.Target, true, i)
			j++
			continue
		}
		if len(rest) > 0 {
			e.applyValue(lv.Target, rest, i)
			return 0, true
		}
		if i+1 >= len(e.argv) {
			return 0, false
		}
		e.applyValue(lv.Target, e.argv[i+1], i)
		return 1, true
	}
	return 0, true
}

func (e *evaluator) positional(tok string, i int) (Result, bool) {
	f := e.flags()
	if f&NodeHasChildren == 0 || e.stray != 0 {
		if f&NodeInterspersed == 0 {
			return e.finish(), true
		}
		return Result{}, false
	}
	lv, ok := e.lookup(LexWord, tok)
	if !ok {
		if f&NodeEntry != 0 {
			return e.parseError(i), true
		}
		// cobra's Traverse makes this node the command with the rest as arguments: it
		// prints help when help is set at the end, and fails otherwise.
		e.stray = i
		if f&NodeInterspersed == 0 {
			return e.finish(), true
		}
		return Result{}, false
	}
	if f&NodeHelpTopic != 0 {
		return Result{Verdict: VerdictAllow, Help: 1, Node: e.node}, true
	}
	e.node = lv.Target
	e.leafTok = uint16(i)
	nf := e.flags()
	if nf&NodeHelpLocal != 0 {
		e.help = false
	}
	if nf&NodeStopAllow != 0 {
		return Result{Verdict: VerdictAllow, Node: e.node}, true
	}
	return Result{}, false
}

func (e *evaluator) applyBool(effect uint16, b bool, tok int) {
	if effect == 0 {
		return
	}
	ef := e.t.Effects[effect]
	if ef.Kind == EffectHelp {
		e.help = b
		return
	}
	if b {
		e.trigger(Rule(ef.Rule), effect, tok)
	}
}

func (e *evaluator) applyValue(effect uint16, v string, tok int) {
	if effect == 0 {
		return
	}
	ef := e.t.Effects[effect]
	if ef.Kind == EffectHelp {
		return // help is a bool flag everywhere; a value-taking help has no effect
	}
	if e.t.match(ef, v) {
		e.trigger(Rule(ef.Rule), effect, tok)
	}
}

func (e *evaluator) trigger(rule Rule, effect uint16, tok int) {
	tr := trigger{set: true, rule: rule, effect: effect, token: uint16(tok)}
	switch e.t.Rules[rule] {
	case ActionBlock:
		if !e.firstBlock.set {
			e.firstBlock = tr
		}
	case ActionAudit:
		if !e.firstAudit.set {
			e.firstAudit = tr
		}
	}
}

func (e *evaluator) result(v Verdict, tr trigger) Result {
	return Result{Verdict: v, Rule: tr.rule, Node: e.node, Effect: tr.effect, Token: tr.token}
}

func (e *evaluator) parseError(tok int) Result {
	e.trigger(RuleUnknown, 0, tok)
	switch {
	case e.firstBlock.set:
		return e.result(VerdictBlock, e.firstBlock)
	case e.firstAudit.set:
		return e.result(VerdictAudit, e.firstAudit)
	}
	return Result{Verdict: VerdictAllow, Node: e.node}
}

func (e *evaluator) finish() Result {
	if e.help {
		return Result{Verdict: VerdictAllow, Help: 1, Node: e.node}
	}
	if e.stray != 0 {
		return e.parseError(e.stray)
	}
	leaf := trigger{}
	var leafAction Action
	if id := e.t.Nodes[e.node].LeafEffect; id != 0 {
		r := Rule(e.t.Effects[id].Rule)
		leaf = trigger{set: true, rule: r, effect: id, token: e.leafTok}
		leafAction = e.t.Rules[r]
	}
	switch {
	case leaf.set && leafAction == ActionBlock:
		return e.result(VerdictBlock, leaf)
	case e.firstBlock.set:
		return e.result(VerdictBlock, e.firstBlock)
	case leaf.set && leafAction == ActionAudit:
		return e.result(VerdictAudit, leaf)
	case e.firstAudit.set:
		return e.result(VerdictAudit, e.firstAudit)
	}
	return Result{Verdict: VerdictAllow, Node: e.node}
}

// parseBool accepts exactly what strconv.ParseBool accepts.
func parseBool(s string) (bool, bool) {
	switch s {
	case "1", "t", "T", "true", "TRUE", "True":
		return true, true
	case "0", "f", "F", "false", "FALSE", "False":
		return false, true
	}
	return false, false
}

package policy

import (
	"fmt"
	"slices"
	"strings"
)

// applyRules turns the blocked operations, the block list's command paths and the escape flags
// into leaf and flag effects.
func (c *compiler) applyRules() error {
	var paths []string
	for _, b := range c.p.Block {
		if slices.Contains(Operations, b) {
			c.blocked[b] = true
			continue
		}
		n, err := c.resolve(b)
		if err != nil {
			return c.errorf("block entry %q is neither an operation (%s) nor a command path: %v",
				b, strings.Join(Operations, ", "), err)
		}
		paths = append(paths, b)
		c.setSubtree(n, c.effect(RuleBlockedSubcommand, n.path, nil, 0), map[*cnode]bool{})
	}
	anyBlocked := len(c.blocked) > 0 || len(paths) > 0
	for _, eq := range equivalents {
		on := slices.ContainsFunc(eq.ops, func(op string) bool { return c.blocked[op] || (op == anyOp && anyBlocked) })
		if !on {
			continue
		}
		if err := c.attach(RuleBlockedSubcommand, eq.paths, eq.flags, eq.match); err != nil {
			return err
		}
	}
	if c.p.Escape == ActionOff {
		return nil
	}
	for _, es := range escapes {
		if err := c.attach(RuleEscape, es.paths, es.flags, es.match); err != nil {
			return err
		}
	}
	return nil
}

// attach puts a rule on commands (no flags) or on flags of commands. Every flag must exist on
// at least one of the commands, so a typo in the policy data cannot silently drop a rule.
func (c *compiler) attach(rule Rule, paths, flags []string, m *matcher) error {
	found := map[string]bool{}
	for _, path := range paths {
		n, err := c.resolve(path)
		if err != nil {
			if c.untrustedPlugin(path) {
				continue
			}
			return fmt.Errorf("policy data: %v", err)
		}
		if len(flags) == 0 {
			if n.leaf == 0 {
				n.leaf = c.effect(rule, n.path, nil, 0)
			}
			continue
		}
		for _, name := range flags {
			i := slices.IndexFunc(n.flags, func(f Flag) bool { return f.Name == name })
			if i < 0 {
				continue
			}
			found[name] = true
			if _, done := n.effects[name]; done {
				continue
			}
			f := n.flags[i]
			label := n.path + " --" + name
			if f.TakesValue {
				n.effects[name] = c.effect(rule, label, m, 1)
			} else {
				n.effects[name] = c.effect(rule, label, nil, 0)
			}
		}
	}
	for _, name := range flags {
		if !found[name] && !c.allUntrusted(paths) {
			return fmt.Errorf("policy data: flag --%s exists on none of %v", name, paths)
		}
	}
	return nil
}

func (c *compiler) untrustedPlugin(path string) bool {
	w := strings.Fields(path)[0]
	return (w == "compose" || w == "buildx") && !c.trusted(w)
}

func (c *compiler) allUntrusted(paths []string) bool {
	for _, p := range paths {
		if !c.untrustedPlugin(p) {
			return false
		}
	}
	return true
}

// setSubtree gives n and all its descendants a leaf effect (blocking "trust" blocks its
// subcommands too).
func (c *compiler) setSubtree(n *cnode, effect uint16, seen map[*cnode]bool) {
	if seen[n] {
		return
	}
	seen[n] = true
	if n.leaf == 0 {
		n.leaf = effect
	}
	for _, w := range n.words {
		c.setSubtree(n.children[w], effect, seen)
	}
}

// effect returns the id of a rule effect, creating it once per distinct (rule, label, matcher).
// valueFlag is 1 when the matcher applies to a flag value.
func (c *compiler) effect(rule Rule, label string, m *matcher, valueFlag int) uint16 {
	key := fmt.Sprintf("%d|%s|%p|%d", rule, label, m, valueFlag)
	if id, ok := c.effects[key]; ok {
		return id
	}
	e := Effect{Kind: EffectRule, Rule: uint8(rule)}
	if m != nil {
		e.Extract = m.extract
		e.Pat = uint16(len(c.t.Patterns))
		for _, p := range m.patterns {
			if p.s == bindPaths {
				c.addPattern(PatPath, "/")
				for _, sp := range c.p.SensitivePaths {
					c.addPattern(PatPath, sp)
				}
				continue
			}
			c.addPattern(p.kind, p.s)
		}
		e.NPat = uint8(len(c.t.Patterns) - int(e.Pat))
	}
	id := uint16(len(c.t.Effects))
	c.t.Effects = append(c.t.Effects, e)
	c.t.EffectNames = append(c.t.EffectNames, label)
	c.effects[key] = id
	return id
}

func (c *compiler) addPattern(kind uint8, s string) {
	p := Pattern{Kind: kind, Len: uint8(len(s))}
	copy(p.S[:], s)
	c.t.Patterns = append(c.t.Patterns, p)
}

// emit writes the node, lexicon and rule tables.
func (c *compiler) emit() error {
	t := c.t
	t.Nodes = make([]Node, len(c.nodes))
	t.NodePath = make([]string, len(c.nodes))
	for _, n := range c.nodes[1:] {
		if len(n.children) > 0 {
			n.nflags |= NodeHasChildren
		}
		t.Nodes[n.id] = Node{LeafEffect: n.leaf, Flags: n.nflags}
		t.NodePath[n.id] = n.path
		for _, w := range n.words {
			k, ok := MakeLexKey(n.id, LexWord, w)
			if !ok {
				return c.errorf("command word %q at %q is longer than %d bytes", w, n.path, NameMax)
			}
			t.Lexicon[k] = LexVal{Target: n.children[w].id}
		}
		for _, f := range n.flags {
			v := LexVal{Target: n.effects[f.Name]}
			if f.Name == "help" {
				v.Target = 1
			}
			if f.TakesValue {
				v.TakesValue = 1
			}
			k, ok := MakeLexKey(n.id, LexLong, f.Name)
			if !ok {
				return c.errorf("flag --%s at %q is longer than %d bytes", f.Name, n.path, NameMax)
			}
			t.Lexicon[k] = v
			if f.Shorthand != "" {
				k, _ := MakeLexKey(n.id, LexShort, f.Shorthand)
				t.Lexicon[k] = v
			}
		}
	}
	if len(t.Patterns) > 0xffff || len(t.Effects) > 0xffff || len(c.nodes) > 0xffff {
		return c.errorf("tables too large")
	}
	for _, e := range t.Effects {
		if int(e.Pat)+int(e.NPat) > len(t.Patterns) {
			return c.errorf("effect pattern range out of bounds")
		}
	}
	down := func(a Action) Action {
		if c.p.Mode == ActionAudit && a == ActionBlock {
			return ActionAudit
		}
		return a
	}
	t.Rules[RuleBlockedSubcommand] = down(ActionBlock)
	t.Rules[RuleEscape] = down(c.p.Escape)
	t.Rules[RuleUnknown] = down(c.p.Unknown)
	return nil
}

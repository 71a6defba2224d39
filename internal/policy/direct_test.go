package policy

import (
	"slices"
	"strings"
)

// A second classifier that walks the grammar trees and the policy data directly, with no
// tables. The fuzz test checks that Compile + Eval agree with it, so a compiler bug cannot hide
// behind an interpreter that faithfully runs wrong tables.

type position struct {
	cmd    *Command   // nil for a plugin binary's entry
	chain  []*Command // ancestors in the command's own tree, root first, cmd last
	path   string
	entry  string    // "docker", "compose", "buildx" at an entry
	helpOf *position // set at cobra's help command: its topics are helpOf's children
}

type direct struct {
	p     Policy
	roots map[string]*Command
}

func newDirect(p Policy) *direct {
	return &direct{p: p, roots: map[string]*Command{"docker": dockerTree(), "compose": composeTree(), "buildx": buildxTree()}}
}

func (d *direct) pos(tree string, words ...string) position {
	c := d.roots[tree]
	chain := []*Command{c}
	for _, w := range words {
		c = c.Child(w)
		chain = append(chain, c)
	}
	return position{cmd: c, chain: chain, path: strings.Join(append([]string{tree}, words...), " ")}
}

func (d *direct) trusted(pl string) bool { return slices.Contains(d.p.Plugins, pl) }

// child follows word from pos, with plugin dispatch and buildx forwarding.
func (d *direct) child(pos position, word string) (position, bool) {
	if word == "help" && (pos.entry != "" && d.trusted(pos.entry) || pos.path == "docker" ||
		(pos.path == "compose" || pos.path == "buildx") && pos.entry == "") {
		h := position{path: pos.path + " help", helpOf: &pos}
		if pos.entry == "" {
			h.cmd = pos.cmd.Child("help")
			h.chain = append(slices.Clone(pos.chain), h.cmd)
		}
		return h, true
	}
	if (word == "__complete" || word == "__completeNoDesc") && (pos.path == "docker" && pos.entry == "" || pos.entry != "" && d.trusted(pos.entry)) {
		return position{path: pos.path + " " + word}, true
	}
	if pos.entry != "" {
		pl := pos.entry
		switch {
		case word == pl && d.trusted(pl):
			return d.pos(pl), true
		case word == "docker-cli-plugin-metadata":
			return position{path: pl + " docker-cli-plugin-metadata"}, true
		}
		if !d.trusted(pl) || word == "help" {
			return position{}, false
		}
		pos = d.pos(pl)
	}
	if pos.cmd == nil {
		return position{}, false
	}
	if pos.path == "docker" {
		switch {
		case (word == "compose" || word == "buildx") && d.trusted(word):
			return d.pos(word), true
		case word == "build" && d.trusted("buildx"):
			return d.pos("buildx", "build"), true
		case word == "bake" && d.trusted("buildx"):
			return d.pos("buildx", "bake"), true
		case word == "builder" && d.trusted("buildx"):
			return d.pos("buildx"), true
		}
	}
	if pos.path == "docker image" && word == "build" && d.trusted("buildx") {
		return d.pos("buildx", "build"), true
	}
	c := pos.cmd.Child(word)
	if c == nil {
		return position{}, false
	}
	return position{cmd: c, chain: append(slices.Clone(pos.chain), c), path: pos.path + " " + c.Name}, true
}

func (d *direct) hasChildren(pos position) bool {
	if pos.entry != "" || pos.helpOf != nil {
		return true
	}
	return pos.cmd != nil && (len(pos.cmd.Sub) > 0 || pos.path == "docker")
}

// flag finds a flag by long name or shorthand as pflag would at pos.
func (d *direct) flag(pos position, long, short string) (Flag, bool) {
	var sets [][]Flag
	if pos.entry != "" && !d.trusted(pos.entry) {
		sets = [][]Flag{{{Name: "help", Shorthand: "h"}}}
	} else if pos.entry != "" {
		sets = [][]Flag{d.flagsAt(d.pos("docker"))}
		if d.trusted(pos.entry) {
			sets = append(sets, d.flagsAt(d.pos(pos.entry)))
		}
	} else {
		sets = [][]Flag{d.flagsAt(pos)}
	}
	for _, set := range sets {
		for _, f := range set {
			if (long != "" && f.Name == long) || (short != "" && f.Shorthand == short) {
				return f, true
			}
		}
	}
	return Flag{}, false
}

func (d *direct) flagsAt(pos position) []Flag {
	if pos.cmd == nil {
		return []Flag{{Name: "help", Shorthand: "h"}}
	}
	var out []Flag
	taken := map[string]bool{}
	add := func(f Flag) {
		if slices.ContainsFunc(out, func(o Flag) bool { return o.Name == f.Name }) {
			return
		}
		if taken[f.Shorthand] {
			f.Shorthand = ""
		}
		if f.Shorthand != "" {
			taken[f.Shorthand] = true
		}
		out = append(out, f)
	}
	for _, f := range pos.cmd.Flags {
		add(f)
	}
	for i := len(pos.chain) - 2; i >= 0; i-- {
		for _, f := range pos.chain[i].Flags {
			if f.Persistent {
				add(f)
			}
		}
	}
	add(Flag{Name: "help", Shorthand: "h"})
	return out
}

// leafRule is the rule a command itself triggers.
func (d *direct) leafRule(path string) Rule {
	for _, b := range d.p.Block {
		if slices.Contains(Operations, b) {
			continue
		}
		bp := b
		if w := strings.Fields(b)[0]; w != "compose" && w != "buildx" && w != "docker" {
			bp = "docker " + b
		}
		if path == bp || strings.HasPrefix(path, bp+" ") {
			return RuleBlockedSubcommand
		}
	}
	for _, eq := range equivalents {
		if len(eq.flags) == 0 && d.opOn(eq.ops) && slices.Contains(eq.paths, path) {
			return RuleBlockedSubcommand
		}
	}
	if d.p.Escape != ActionOff {
		for _, es := range escapes {
			if len(es.flags) == 0 && slices.Contains(es.paths, path) {
				return RuleEscape
			}
		}
	}
	return RuleNone
}

func (d *direct) opOn(ops []string) bool {
	for _, op := range ops {
		if slices.Contains(d.p.Block, op) {
			return true
		}
		if op == anyOp && len(d.p.Block) > 0 {
			return true
		}
	}
	return false
}

// flagRule is the rule flag f at path triggers with value v (bool flags: when true).
func (d *direct) flagRule(path string, f Flag, v string, b bool) Rule {
	hit := func(m *matcher) bool {
		if !f.TakesValue {
			return b
		}
		return m == nil || d.matches(m, v)
	}
	for _, eq := range equivalents {
		if slices.Contains(eq.flags, f.Name) && d.opOn(eq.ops) && slices.Contains(eq.paths, path) {
			if hit(eq.match) {
				return RuleBlockedSubcommand
			}
			return RuleNone
		}
	}
	if d.p.Escape != ActionOff {
		for _, es := range escapes {
			if slices.Contains(es.flags, f.Name) && slices.Contains(es.paths, path) {
				if hit(es.match) {
					return RuleEscape
				}
				return RuleNone
			}
		}
	}
	return RuleNone
}

func (d *direct) matches(m *matcher, v string) bool {
	if len(v) > ValueMax {
		return true
	}
	var keys []string
	test := func(s string) bool {
		for _, p := range m.patterns {
			switch {
			case p.kind == PatKey:
			case p.s == bindPaths:
				if directPath(s, "/") || slices.ContainsFunc(d.p.SensitivePaths, func(sp string) bool { return directPath(s, sp) }) {
					return true
				}
			case p.kind == PatExact && s == p.s, p.kind == PatPrefix && strings.HasPrefix(s, p.s),
				p.kind == PatSuffix && strings.HasSuffix(s, p.s):
				return true
			}
		}
		return false
	}
	for _, p := range m.patterns {
		if p.kind == PatKey {
			keys = append(keys, p.s)
		}
	}
	switch m.extract {
	case ExtractWhole:
		return test(v)
	case ExtractVolumeSrc:
		i := strings.IndexByte(v, ':')
		return i >= 0 && test(v[:i])
	case ExtractCSVField, ExtractCSVElem:
		if strings.ContainsRune(v, '"') {
			return true
		}
		for _, field := range strings.Split(v, ",") {
			if m.extract == ExtractCSVElem {
				if test(field) {
					return true
				}
				continue
			}
			i := strings.IndexByte(field, '=')
			if i >= 0 && slices.Contains(keys, strings.ToLower(field[:i])) && test(field[i+1:]) {
				return true
			}
		}
		return false
	case ExtractKVKey:
		if i := strings.IndexByte(v, '='); i >= 0 {
			v = v[:i]
		}
		return test(v)
	}
	return true
}

// directPath is the bind-source check written out independently of sensitivePath.
func directPath(s, p string) bool {
	switch {
	case s == "":
		return false
	case !strings.HasPrefix(s, "/"):
		return strings.HasPrefix(s, ".") || strings.ContainsRune(s, '/')
	}
	s = strings.TrimRight(s, "/")
	if s == "" {
		return true
	}
	for _, seg := range strings.Split(s[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return true
		}
	}
	return s == p || strings.HasPrefix(s, p+"/") || strings.HasPrefix(p, s+"/")
}

type directResult struct {
	verdict Verdict
	rule    Rule
	path    string
	help    bool
}

func (d *direct) action(r Rule) Action {
	a := ActionBlock
	switch r {
	case RuleEscape:
		a = d.p.Escape
	case RuleUnknown:
		a = d.p.Unknown
	}
	if d.p.Mode == ActionAudit && a == ActionBlock {
		a = ActionAudit
	}
	return a
}

// classify is the direct evaluation. It returns verdict, rule and the command path.
func (d *direct) classify(bin Binary, argv []string) directResult {
	entryName := bin.String()
	pos := d.pos("docker")
	if bin != BinDocker {
		pos = position{entry: entryName, path: entryName}
	}
	if len(argv) > MaxTokens || argvBytes(argv) > MaxArgvBytes {
		return directResult{verdict: VerdictUndecided, path: pos.path}
	}
	var hits []Rule
	help, dd, rootDD, stray := false, false, false, false
	isEntry := func() bool { return pos.entry != "" || pos.path == "docker" }
	stop := func(parseErr bool) directResult {
		if parseErr {
			hits = append(hits, RuleUnknown)
		} else {
			if help {
				return directResult{verdict: VerdictAllow, path: pos.path, help: true}
			}
			if stray {
				hits = append(hits, RuleUnknown)
			} else if r := d.leafRule(pos.path); r != RuleNone {
				hits = append([]Rule{r}, hits...)
			}
		}
		for _, want := range []Action{ActionBlock, ActionAudit} {
			for _, r := range hits {
				if d.action(r) == want {
					return directResult{verdict: map[Action]Verdict{ActionBlock: VerdictBlock, ActionAudit: VerdictAudit}[want], rule: r, path: pos.path}
				}
			}
		}
		return directResult{verdict: VerdictAllow, path: pos.path}
	}
	apply := func(f Flag, v string, b bool) {
		if f.Name == "help" {
			if !f.TakesValue {
				help = b
			}
			return
		}
		if r := d.flagRule(pos.path, f, v, b); r != RuleNone && d.action(r) != ActionOff {
			hits = append(hits, r)
		}
	}
	for i := 1; i < len(argv); i++ {
		tok := argv[i]
		if dd || rootDD || len(tok) < 2 || tok[0] != '-' {
			rootDD = false
			interspersed := pos.cmd != nil && pos.cmd.Interspersed
			if !d.hasChildren(pos) || stray {
				if !interspersed {
					return stop(false)
				}
				continue
			}
			var next position
			ok := false
			if pos.helpOf != nil {
				_, ok = d.child(*pos.helpOf, tok)
				ok = ok && tok != "help"
			} else {
				next, ok = d.child(pos, tok)
			}
			if !ok {
				if isEntry() {
					return stop(true)
				}
				stray = true
				if !interspersed {
					return stop(false)
				}
				continue
			}
			if pos.helpOf != nil {
				return directResult{verdict: VerdictAllow, path: pos.path, help: true}
			}
			pos = next
			if pos.cmd != nil && (strings.HasPrefix(pos.path, "compose") || strings.HasPrefix(pos.path, "buildx") ||
				pos.path != "docker" && slices.ContainsFunc(pos.cmd.Flags, func(f Flag) bool { return f.Name == "help" })) {
				help = false
			}
			if strings.HasSuffix(pos.path, "docker-cli-plugin-metadata") || strings.HasSuffix(pos.path, "__complete") || strings.HasSuffix(pos.path, "__completeNoDesc") {
				return directResult{verdict: VerdictAllow, path: pos.path}
			}
			continue
		}
		if tok == "--" {
			if !d.hasChildren(pos) {
				dd = true
			} else if isEntry() {
				rootDD = true
			} else {
				return stop(true)
			}
			continue
		}
		if strings.HasPrefix(tok, "--") {
			name, val, eq := strings.Cut(tok[2:], "=")
			f, ok := d.flag(pos, name, "")
			if !ok || name == "" {
				return stop(true)
			}
			if f.TakesValue {
				if !eq {
					if i+1 >= len(argv) {
						return stop(true)
					}
					i++
					val = argv[i]
				}
				apply(f, val, false)
			} else {
				b := true
				if eq {
					if b, ok = parseBool(val); !ok {
						return stop(true)
					}
				}
				apply(f, "", b)
			}
			continue
		}
		rest := tok[1:]
		for n := 0; rest != ""; n++ {
			if strings.HasPrefix(rest, "test.") {
				break
			}
			if n >= ClusterMax {
				return stop(true)
			}
			f, ok := d.flag(pos, "", rest[:1])
			if !ok {
				return stop(true)
			}
			after := rest[1:]
			if len(after) >= 2 && after[0] == '=' {
				if f.TakesValue {
					apply(f, after[1:], false)
				} else if b, ok := parseBool(after[1:]); ok {
					apply(f, "", b)
				} else {
					return stop(true)
				}
				break
			}
			if !f.TakesValue {
				apply(f, "", true)
				rest = after
				continue
			}
			if after != "" {
				apply(f, after, false)
			} else {
				if i+1 >= len(argv) {
					return stop(true)
				}
				i++
				apply(f, argv[i], false)
			}
			break
		}
	}
	return stop(false)
}

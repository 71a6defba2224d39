package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrPolicy is wrapped by every error Compile returns for a bad policy.
var ErrPolicy = errors.New("invalid policy")

// cnode is a node while compiling.
type cnode struct {
	id       uint16
	cmd      *Command // nil for synthetic nodes
	path     string
	flags    []Flag // effective flags: local, then inherited persistent, then help
	children map[string]*cnode
	words    []string // children names in insertion order (aliases included)
	nflags   uint16
	leaf     uint16 // leaf effect
	effects  map[string]uint16
}

type compiler struct {
	p       Policy
	t       *Tables
	nodes   []*cnode
	byCmd   map[*Command]*cnode
	roots   map[string]*Command // "docker", "compose", "buildx" → tree root
	effects map[string]uint16   // dedup key → effect id
	blocked map[string]bool     // blocked operations
}

// Compile turns the embedded grammar and p into tables for both interpreters.
func Compile(p Policy) (*Tables, error) {
	c := &compiler{
		p:       p,
		t:       &Tables{Lexicon: map[LexKey]LexVal{}},
		byCmd:   map[*Command]*cnode{},
		effects: map[string]uint16{},
		blocked: map[string]bool{},
		roots:   map[string]*Command{"docker": dockerTree(), "compose": composeTree(), "buildx": buildxTree()},
	}
	if err := c.checkPolicy(); err != nil {
		return nil, err
	}
	if err := c.build(); err != nil {
		return nil, err
	}
	return c.t, nil
}

func (c *compiler) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrPolicy, fmt.Sprintf(format, args...))
}

func (c *compiler) checkPolicy() error {
	p := c.p
	if p.Mode != ActionBlock && p.Mode != ActionAudit {
		return c.errorf("mode must be block (enforce) or audit, got %v", p.Mode)
	}
	if p.Escape > ActionAudit {
		return c.errorf("escape must be block, audit or off, got %v", p.Escape)
	}
	if p.Unknown != ActionBlock && p.Unknown != ActionAudit {
		return c.errorf("unknown must be block or audit, got %v", p.Unknown)
	}
	for _, pl := range p.Plugins {
		if pl != "compose" && pl != "buildx" {
			return c.errorf("plugin %q: only compose and buildx have a known grammar", pl)
		}
	}
	for _, sp := range p.SensitivePaths {
		if !strings.HasPrefix(sp, "/") || len(sp) > PatternMax {
			return c.errorf("sensitive path %q must be absolute and at most %d bytes", sp, PatternMax)
		}
	}
	return nil
}

func (c *compiler) trusted(plugin string) bool { return slices.Contains(c.p.Plugins, plugin) }

// newNode allocates a node id; node 0 stays unused so that 0 means "none".
func (c *compiler) newNode(cmd *Command, path string) *cnode {
	if len(c.nodes) == 0 {
		c.nodes = append(c.nodes, nil)
	}
	n := &cnode{id: uint16(len(c.nodes)), cmd: cmd, path: path, children: map[string]*cnode{}, effects: map[string]uint16{}}
	c.nodes = append(c.nodes, n)
	if cmd != nil {
		c.byCmd[cmd] = n
	}
	return n
}

func (n *cnode) addChild(name string, child *cnode) {
	if _, ok := n.children[name]; !ok {
		n.words = append(n.words, name)
	}
	n.children[name] = child
}

// tree creates nodes for cmd and its descendants. inherited are the persistent flags of the
// ancestors; helpLocal marks every node of the tree NodeHelpLocal (compose, buildx).
func (c *compiler) tree(cmd *Command, path string, inherited []Flag, helpLocal bool) *cnode {
	n := c.newNode(cmd, path)
	n.flags = mergeFlags(cmd.Flags, inherited)
	if cmd.Interspersed {
		n.nflags |= NodeInterspersed
	}
	if helpLocal || (path != "docker" && hasFlag(cmd.Flags, "help")) {
		n.nflags |= NodeHelpLocal
	}
	var persist []Flag
	for _, f := range n.flags {
		if f.Persistent {
			persist = append(persist, f)
		}
	}
	for _, s := range cmd.Sub {
		child := c.tree(s, path+" "+s.Name, persist, helpLocal)
		n.addChild(s.Name, child)
		for _, a := range s.Aliases {
			n.addChild(a, child)
		}
	}
	return n
}

func hasFlag(fs []Flag, name string) bool {
	return slices.ContainsFunc(fs, func(f Flag) bool { return f.Name == name })
}

// mergeFlags gives a node's flag set as pflag sees it: local flags shadow inherited ones by
// name and by shorthand, and every command has a help flag (cobra adds -h/--help when the
// letter is free).
func mergeFlags(local, inherited []Flag) []Flag {
	out := append([]Flag(nil), local...)
	short := map[string]bool{}
	for _, f := range local {
		if f.Shorthand != "" {
			short[f.Shorthand] = true
		}
	}
	for _, f := range inherited {
		if hasFlag(out, f.Name) {
			continue
		}
		if short[f.Shorthand] {
			f.Shorthand = ""
		}
		out = append(out, f)
		if f.Shorthand != "" {
			short[f.Shorthand] = true
		}
	}
	if !hasFlag(out, "help") {
		h := Flag{Name: "help"}
		if !short["h"] {
			h.Shorthand = "h"
		}
		out = append(out, h)
	}
	return out
}

// unionFlags merges the flag sets of an entry node; a name or letter with two meanings is an
// error, since the entry could not then be parsed the way either program parses it.
func unionFlags(sets ...[]Flag) ([]Flag, error) {
	var out []Flag
	for _, set := range sets {
		for _, f := range set {
			dup := false
			for _, o := range out {
				if o.Name == f.Name {
					if o.TakesValue != f.TakesValue {
						return nil, fmt.Errorf("entry flag --%s has two arities", f.Name)
					}
					dup = true
				} else if f.Shorthand != "" && o.Shorthand == f.Shorthand && o.TakesValue != f.TakesValue {
					return nil, fmt.Errorf("entry shorthand -%s has two arities", f.Shorthand)
				}
			}
			if !dup {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

func (c *compiler) build() error {
	t := c.t
	// Effect 0 is "none" and effect 1 is the help flag.
	t.Effects = []Effect{{}, {Kind: EffectHelp}}
	t.EffectNames = []string{"", "--help"}

	docker := c.tree(c.roots["docker"], "docker", nil, false)
	docker.nflags |= NodeEntry
	var compose, buildx *cnode
	if c.trusted("compose") {
		compose = c.tree(c.roots["compose"], "compose", nil, true)
		docker.addChild("compose", compose)
	}
	if c.trusted("buildx") {
		buildx = c.tree(c.roots["buildx"], "buildx", nil, true)
		docker.addChild("buildx", buildx)
		// The CLI forwards bake, builder, build and image build to buildx (grammar §3).
		docker.addChild("build", buildx.children["build"])
		docker.addChild("bake", buildx.children["bake"])
		docker.addChild("builder", buildx)
		docker.children["image"].addChild("build", buildx.children["build"])
	}
	c.completion(docker)
	for _, n := range []*cnode{docker, compose, buildx} {
		if n != nil {
			c.helpTopic(n)
		}
	}
	t.Entries[BinDocker] = docker.id
	for _, pl := range []struct {
		bin  Binary
		name string
		root *cnode
	}{{BinCompose, "compose", compose}, {BinBuildx, "buildx", buildx}} {
		if pl.root == nil {
			// An untrusted plugin's entry accepts nothing: every argv is unknown.
			e := c.newNode(nil, pl.name)
			e.flags = mergeFlags(nil, nil)
			e.nflags |= NodeEntry
			e.addChild("docker-cli-plugin-metadata", c.stopAllow(pl.name))
			t.Entries[pl.bin] = e.id
			continue
		}
		e, err := c.pluginEntry(pl.name, docker, pl.root)
		if err != nil {
			return c.errorf("%v", err)
		}
		t.Entries[pl.bin] = e.id
	}
	if err := c.applyRules(); err != nil {
		return err
	}
	return c.emit()
}

// completion adds cobra's hidden completion commands, which only list objects and never run
// the command they complete.
func (c *compiler) completion(n *cnode) {
	for _, w := range []string{"__complete", "__completeNoDesc"} {
		m := c.newNode(nil, n.path+" "+w)
		m.nflags |= NodeStopAllow
		m.flags = mergeFlags(nil, nil)
		n.addChild(w, m)
	}
}

func (c *compiler) stopAllow(name string) *cnode {
	m := c.newNode(nil, name+" docker-cli-plugin-metadata")
	m.nflags |= NodeStopAllow
	m.flags = mergeFlags(nil, nil)
	return m
}

// pluginEntry builds the entry node of a plugin binary. It is exec'd either by the docker CLI
// as [path, <docker global flags>, name, ...] or standalone as [path, <plugin root flags>, sub,
// ...] (compose also lifts docker's -H, --context, ... there). Its flags are the union of both
// roots and its words are the plugin's subcommands plus the plugin name itself.
func (c *compiler) pluginEntry(name string, docker, root *cnode) (*cnode, error) {
	flags, err := unionFlags(docker.flags, root.flags)
	if err != nil {
		return nil, fmt.Errorf("%s entry: %w", name, err)
	}
	e := c.newNode(nil, name)
	e.flags = flags
	e.nflags |= NodeEntry | NodeHelpLocal
	for _, w := range root.words {
		if w != "help" {
			e.addChild(w, root.children[w])
		}
	}
	e.addChild(name, root)
	e.addChild("docker-cli-plugin-metadata", c.stopAllow(name))
	c.completion(e)
	c.helpTopic(e)
	return e, nil
}

// helpTopic marks n's "help" child (creating one for synthetic nodes) as cobra's help command,
// whose first word must name one of n's children.
func (c *compiler) helpTopic(n *cnode) {
	h := n.children["help"]
	if h == nil || n.cmd == nil {
		h = c.newNode(nil, n.path+" help")
		h.flags = mergeFlags(nil, nil)
		n.addChild("help", h)
	}
	h.nflags |= NodeHelpTopic | NodeHasChildren
	for _, w := range n.words {
		if w != "help" {
			h.addChild(w, n.children[w])
		}
	}
}

// resolve finds the node of a command path like "docker container exec" or "compose up",
// walking the grammar trees as they are (before forwarding).
func (c *compiler) resolve(path string) (*cnode, error) {
	words := strings.Fields(path)
	if len(words) == 0 {
		return nil, fmt.Errorf("empty command path")
	}
	root, ok := c.roots[words[0]]
	if !ok {
		root, words = c.roots["docker"], append([]string{"docker"}, words...)
	}
	cmd := root
	for _, w := range words[1:] {
		if cmd = cmd.Child(w); cmd == nil {
			return nil, fmt.Errorf("unknown command %q", path)
		}
	}
	n := c.byCmd[cmd]
	if n == nil {
		return nil, fmt.Errorf("command %q belongs to a plugin that is not trusted", path)
	}
	return n, nil
}

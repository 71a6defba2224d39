package policy

//go:generate go run ./gen -trees trees -out grammar_gen.go

// Command is one node of a cobra command tree, as generated from trees/*.json.
type Command struct {
	Name         string
	Aliases      []string
	Hidden       bool
	Runnable     bool
	Interspersed bool
	Flags        []Flag
	Sub          []*Command
}

// Flag is one pflag flag of a command.
type Flag struct {
	Name       string
	Shorthand  string
	TakesValue bool // false: bool-like (NoOptDefVal set), never consumes the next element
	Persistent bool // inherited by every descendant
}

// Child returns the direct subcommand named name (or aliased so), or nil.
func (c *Command) Child(name string) *Command {
	for _, s := range c.Sub {
		if s.Name == name {
			return s
		}
		for _, a := range s.Aliases {
			if a == name {
				return s
			}
		}
	}
	return nil
}

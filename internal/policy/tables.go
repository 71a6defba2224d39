package policy

// The compiled form of grammar plus policy. docs/tables.md is the contract: the BPF interpreter
// in bpf/classify.h reads exactly these tables and must return exactly the same Result.

// Limits shared with bpf/classify.h.
const (
	MaxArgvBytes = 8192 // argv bytes including every NUL
	MaxTokens    = 256  // argv elements including argv[0]
	NameMax      = 32   // longest lexicon name
	ValueMax     = 256  // longest flag value the matchers inspect (longer values match)
	ClusterMax   = 32   // shorthand letters scanned in one cluster
	PatternMax   = 64   // bytes in one pattern string
)

// Binary is the kind of trusted executable whose argv is classified.
type Binary uint8

const (
	BinDocker Binary = iota
	BinCompose
	BinBuildx
	NumBinaries
)

func (b Binary) String() string {
	switch b {
	case BinDocker:
		return "docker"
	case BinCompose:
		return "compose"
	case BinBuildx:
		return "buildx"
	}
	return "invalid"
}

// ParseBinary maps "docker", "compose" and "buildx" to a Binary.
func ParseBinary(s string) (Binary, bool) {
	for b := BinDocker; b < NumBinaries; b++ {
		if b.String() == s {
			return b, true
		}
	}
	return 0, false
}

// Lexicon entry kinds.
const (
	LexWord  uint8 = 1 // child command word or alias
	LexLong  uint8 = 2 // --name
	LexShort uint8 = 3 // -x
)

// Node flags.
const (
	NodeInterspersed uint16 = 1 << iota
	NodeHasChildren
	NodeEntry
	NodeHelpTopic
	NodeStopAllow
	NodeHelpLocal
)

// Effect kinds.
const (
	EffectHelp uint8 = 1
	EffectRule uint8 = 2
)

// Value extractors of rule effects.
const (
	ExtractWhole     uint8 = 1
	ExtractVolumeSrc uint8 = 2
	ExtractCSVField  uint8 = 3
	ExtractCSVElem   uint8 = 4
	ExtractKVKey     uint8 = 5
)

// Pattern kinds.
const (
	PatExact  uint8 = 1
	PatPrefix uint8 = 2
	PatSuffix uint8 = 3
	PatPath   uint8 = 4
	PatKey    uint8 = 5
)

// Rule identifies which part of the policy decided.
type Rule uint8

const (
	RuleNone Rule = iota
	RuleBlockedSubcommand
	RuleEscape
	RuleUnknown
	NumRules
)

var ruleNames = [NumRules]string{"", "blocked-subcommand", "escape-flags", "unknown"}

func (r Rule) String() string {
	if r < NumRules {
		return ruleNames[r]
	}
	return "invalid"
}

// Action is what a rule does when it triggers.
type Action uint8

const (
	ActionOff Action = iota
	ActionBlock
	ActionAudit
)

func (a Action) String() string {
	switch a {
	case ActionOff:
		return "off"
	case ActionBlock:
		return "block"
	case ActionAudit:
		return "audit"
	}
	return "invalid"
}

// Verdict of one classification.
type Verdict uint8

const (
	VerdictAllow     Verdict = 1
	VerdictBlock     Verdict = 2
	VerdictAudit     Verdict = 3
	VerdictNotClient Verdict = 4
	VerdictUndecided Verdict = 5
)

func (v Verdict) String() string {
	switch v {
	case VerdictAllow:
		return "allow"
	case VerdictBlock:
		return "block"
	case VerdictAudit:
		return "audit"
	case VerdictNotClient:
		return "not-client"
	case VerdictUndecided:
		return "undecided"
	}
	return "invalid"
}

// LexKey is the key of the lexicon hash map (36 bytes in C).
type LexKey struct {
	Node uint16
	Kind uint8
	Len  uint8
	Name [NameMax]byte
}

// LexVal is the value of the lexicon hash map.
type LexVal struct {
	Target     uint16 // child node (LexWord) or effect id (flags)
	TakesValue uint8
	Pad        uint8
}

// Node is one entry of the nodes array; index 0 is unused.
type Node struct {
	LeafEffect uint16
	Flags      uint16
}

// Effect is one entry of the effects array; 0 is unused and 1 is the help flag.
type Effect struct {
	Kind    uint8
	Rule    uint8
	Extract uint8
	NPat    uint8
	Pat     uint16
	Pad     uint16
}

// Pattern is one entry of the patterns array.
type Pattern struct {
	Kind uint8
	Len  uint8
	S    [PatternMax]byte
}

// Result is what both interpreters return (12 bytes in C).
type Result struct {
	Verdict Verdict
	Rule    Rule
	Help    uint8
	Pad     uint8
	Node    uint16
	Effect  uint16
	Token   uint16
	Pad2    uint16
}

// Tables is the whole compiled policy: what the loader writes into BPF maps.
type Tables struct {
	Nodes    []Node
	Lexicon  map[LexKey]LexVal
	Effects  []Effect
	Patterns []Pattern
	Rules    [NumRules]Action
	Entries  [NumBinaries]uint16

	// Go-only annotations, for decisions and events.
	NodePath    []string // command path of each node, e.g. "container exec"
	EffectNames []string // flag or command that each effect belongs to, e.g. "--privileged"
}

// MakeLexKey builds a lexicon key; ok is false when name is empty or longer than NameMax.
func MakeLexKey(node uint16, kind uint8, name string) (k LexKey, ok bool) {
	if len(name) == 0 || len(name) > NameMax {
		return k, false
	}
	k.Node, k.Kind, k.Len = node, kind, uint8(len(name))
	copy(k.Name[:], name)
	return k, true
}

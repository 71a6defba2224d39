package policy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Decision is a classification explained for people: what the interpreters decided plus the
// command path and a reason in plain words.
type Decision struct {
	Binary  Binary
	Verdict Verdict
	Rule    Rule
	Command string // resolved command path, e.g. "container exec"
	Reason  string
	Help    bool
	Result  Result
}

// MarshalJSON gives verdict and rule as words.
func (d Decision) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Verdict string `json:"verdict"`
		Rule    string `json:"rule"`
		Command string `json:"command"`
		Reason  string `json:"reason"`
		Binary  string `json:"binary"`
		Help    bool   `json:"help,omitempty"`
	}{d.Verdict.String(), d.Rule.String(), d.Command, d.Reason, d.Binary.String(), d.Help})
}

// Decide classifies argv of binary bin and explains the result.
func (t *Tables) Decide(bin Binary, argv []string) Decision {
	return t.Explain(bin, argv, t.Eval(bin, argv))
}

// Command returns the command path of a node as an operator reads it: "container exec",
// "compose up", "buildx build"; "" for the docker root.
func (t *Tables) Command(node uint16) string {
	if int(node) >= len(t.NodePath) {
		return ""
	}
	return strings.TrimPrefix(strings.TrimPrefix(t.NodePath[node], "docker"), " ")
}

// Explain turns a Result (from either interpreter) for argv into a Decision.
func (t *Tables) Explain(bin Binary, argv []string, r Result) Decision {
	d := Decision{Binary: bin, Verdict: r.Verdict, Rule: r.Rule, Help: r.Help != 0, Result: r, Command: t.Command(r.Node)}
	tok := ""
	if int(r.Token) < len(argv) && r.Token > 0 {
		tok = argv[r.Token]
	}
	name := ""
	if int(r.Effect) < len(t.EffectNames) {
		name = t.EffectNames[r.Effect]
	}
	cmd := d.Command
	if cmd == "" {
		cmd = bin.String()
	}
	// Effect names are a command path ("docker container exec") or a path and a flag
	// ("docker run --privileged").
	path, _, isFlag := strings.Cut(name, " --")
	switch {
	case r.Verdict == VerdictUndecided:
		d.Reason = fmt.Sprintf("argv too long to classify (%d elements, %d bytes; limits %d and %d)",
			len(argv), argvBytes(argv), MaxTokens, MaxArgvBytes)
	case d.Help:
		d.Reason = fmt.Sprintf("only prints help for %q", cmd)
	case r.Rule == RuleUnknown:
		d.Reason = fmt.Sprintf("%s does not know %s here (at %q): unknown command, plugin or flag, or a malformed argument",
			bin, quoteTok(tok), cmd)
	case r.Rule == RuleBlockedSubcommand && isFlag:
		d.Reason = fmt.Sprintf("%s makes %q a blocked operation", flagOf(name, tok), cmd)
	case r.Rule == RuleBlockedSubcommand && int(r.Node) < len(t.NodePath) && path == t.NodePath[r.Node]:
		d.Reason = fmt.Sprintf("%q is a blocked operation", cmd)
	case r.Rule == RuleBlockedSubcommand:
		d.Reason = fmt.Sprintf("%q is blocked with everything under %q", cmd, strings.TrimPrefix(strings.TrimPrefix(path, "docker"), " "))
	case r.Rule == RuleEscape && isFlag:
		d.Reason = fmt.Sprintf("%s lets the container reach the host", flagOf(name, tok))
	case r.Rule == RuleEscape:
		d.Reason = fmt.Sprintf("%q can give a container the host", cmd)
	default:
		d.Reason = fmt.Sprintf("%q is allowed", cmd)
	}
	if r.Verdict == VerdictAudit {
		d.Reason = "audit only: " + d.Reason
	}
	return d
}

func flagOf(effectName, tok string) string {
	_, flag, _ := strings.Cut(effectName, " --")
	if tok != "" && tok != "--"+flag {
		return fmt.Sprintf("--%s (%s)", flag, quoteTok(tok))
	}
	return "--" + flag
}

func quoteTok(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

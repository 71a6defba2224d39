package policy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// vocabulary returns the words and flag spellings the tables know, for random argv.
func vocabulary(t *Tables) []string {
	seen := map[string]bool{}
	for k := range t.Lexicon {
		name := string(k.Name[:k.Len])
		switch k.Kind {
		case LexWord:
			seen[name] = true
		case LexLong:
			seen["--"+name] = true
		case LexShort:
			seen["-"+name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for w := range seen {
		out = append(out, w)
	}
	sort.Strings(out)
	return out
}

var valueVocabulary = []string{"", "-", "--", "=", "host", "container:x", "/", "//", "/etc", "/etc/", "/etc/x", "/var",
	"/var/run/docker.sock", "/srv/app", "/srv/../etc", "/./etc", ".", "./x", "x/y", "vol", "/:/h", "/etc:/e:ro",
	"vol:/data", "/srv:/s", "type=bind,src=/etc,dst=/x", "type=bind,source=/srv,target=/x", "type=volume,volume-opt=device=/etc",
	"\"source=/etc\"", "SOURCE=/root", "device=/etc", "o=bind", "seccomp=unconfined", "apparmor:unconfined",
	"label=disable", "no-new-privileges=false", "security.insecure", "network.host,security.insecure", "*.output=type=registry",
	"t.push=true", "type=registry", "true", "false", "1", "0", "T", "maybe", "test.x", "\xff\xfe", "é", "ctr", "sh",
	strings.Repeat("a", 300), "/" + strings.Repeat("b", 260), "-test.v", "-Dtest.x"}

// RandomArgv draws an argv from vocab and values, mixing forms pflag accepts and rejects.
func randomArgv(r *rand.Rand, vocab []string) []string {
	n := 1 + r.IntN(12)
	if r.IntN(50) == 0 {
		n = 200 + r.IntN(100) // around the token limit
	}
	argv := []string{"docker"}
	for len(argv) < n {
		var tok string
		switch k := r.IntN(20); {
		case k < 9:
			tok = vocab[r.IntN(len(vocab))]
		case k < 12:
			tok = valueVocabulary[r.IntN(len(valueVocabulary))]
		case k < 15: // --flag=value
			w := vocab[r.IntN(len(vocab))]
			tok = w + "=" + valueVocabulary[r.IntN(len(valueVocabulary))]
		case k < 17: // shorthand clusters
			var b strings.Builder
			b.WriteByte('-')
			for range 1 + r.IntN(4) {
				w := vocab[r.IntN(len(vocab))]
				if len(w) == 2 && w[0] == '-' {
					b.WriteByte(w[1])
				}
			}
			if r.IntN(3) == 0 {
				b.WriteString(valueVocabulary[r.IntN(len(valueVocabulary))])
			}
			tok = b.String()
		case k < 18:
			tok = string([]byte{byte(r.IntN(256)), byte(r.IntN(256))})
		default:
			tok = strings.Repeat("x", r.IntN(600))
		}
		argv = append(argv, tok)
	}
	return argv
}

func policies() map[string]Policy {
	audit := DefaultPolicy()
	audit.Mode = ActionAudit
	audit.Escape = ActionOff
	mixed := DefaultPolicy()
	mixed.Escape = ActionAudit
	mixed.Unknown = ActionAudit
	mixed.Block = []string{"exec", "push"}
	noPlugins := DefaultPolicy()
	noPlugins.Plugins = nil
	return map[string]Policy{"default": DefaultPolicy(), "audit": audit, "mixed": mixed, "no-plugins": noPlugins}
}

func compare(t *testing.T, tab *Tables, d *direct, bin Binary, argv []string) {
	t.Helper()
	got := tab.Eval(bin, argv)
	want := d.classify(bin, argv)
	gotPath := ""
	if int(got.Node) < len(tab.NodePath) {
		gotPath = tab.NodePath[got.Node]
	}
	if got.Verdict != want.verdict || got.Rule != want.rule || gotPath != want.path || (got.Help != 0) != want.help {
		t.Fatalf("%s %q:\n tables: %v %v %q help=%d\n direct: %v %v %q help=%v",
			bin, argv, got.Verdict, got.Rule, gotPath, got.Help, want.verdict, want.rule, want.path, want.help)
	}
}

// walkArgv builds an argv that follows the grammar: words chosen among the current node's
// children, flags among its flags, values from valueVocabulary, with an occasional wrong turn.
func walkArgv(r *rand.Rand, t *Tables, bin Binary, byNode map[uint16][]LexKey) []string {
	argv := []string{"docker"}
	node := t.Entries[bin]
	for len(argv) < 2+r.IntN(14) {
		keys := byNode[node]
		if len(keys) == 0 || r.IntN(10) == 0 {
			argv = append(argv, valueVocabulary[r.IntN(len(valueVocabulary))])
			continue
		}
		k := keys[r.IntN(len(keys))]
		name := string(k.Name[:k.Len])
		v := t.Lexicon[k]
		switch k.Kind {
		case LexWord:
			argv = append(argv, name)
			node = v.Target
		case LexLong, LexShort:
			flag := "--" + name
			if k.Kind == LexShort {
				flag = "-" + name
			}
			val := valueVocabulary[r.IntN(len(valueVocabulary))]
			switch {
			case v.TakesValue == 0 && r.IntN(4) == 0:
				argv = append(argv, flag+"="+[]string{"true", "false", "0", "x"}[r.IntN(4)])
			case v.TakesValue == 0:
				argv = append(argv, flag)
			case r.IntN(2) == 0:
				argv = append(argv, flag, val)
			case k.Kind == LexShort && r.IntN(2) == 0:
				argv = append(argv, flag+val)
			default:
				argv = append(argv, flag+"="+val)
			}
		}
	}
	return argv
}

func TestTablesAgreeWithDirectEvaluation(t *testing.T) {
	seed := uint64(20261125)
	t.Logf("seed %d", seed)
	for name, p := range policies() {
		t.Run(name, func(t *testing.T) {
			tab, err := Compile(p)
			if err != nil {
				t.Fatal(err)
			}
			d := newDirect(p)
			vocab := vocabulary(tab)
			byNode := map[uint16][]LexKey{}
			for k := range tab.Lexicon {
				byNode[k.Node] = append(byNode[k.Node], k)
			}
			for _, ks := range byNode {
				sort.Slice(ks, func(i, j int) bool {
					return string(ks[i].Name[:]) < string(ks[j].Name[:]) || string(ks[i].Name[:]) == string(ks[j].Name[:]) && ks[i].Kind < ks[j].Kind
				})
			}
			r := rand.New(rand.NewPCG(seed, uint64(len(name))))
			verdicts := map[Verdict]int{}
			n := 40000
			if testing.Short() {
				n = 4000
			}
			for i := range n {
				bin := Binary(i % int(NumBinaries))
				argv := randomArgv(r, vocab)
				if i%2 == 0 {
					argv = walkArgv(r, tab, bin, byNode)
				}
				compare(t, tab, d, bin, argv)
				verdicts[tab.Eval(bin, argv).Verdict]++
			}
			t.Logf("%d argv: %v", n, verdicts)
			if verdicts[VerdictAllow] == 0 || verdicts[VerdictBlock]+verdicts[VerdictAudit] == 0 {
				t.Fatalf("generator is degenerate: %v", verdicts)
			}
		})
	}
}

func FuzzEval(f *testing.F) {
	f.Add([]byte("\x00exec\x00ctr\x00sh"))
	f.Add([]byte("\x00-Dl\x00debug\x00container\x00exec\x00c"))
	f.Add([]byte("\x01compose\x00-p\x00p\x00exec\x00s"))
	f.Add([]byte("\x02buildx\x00build\x00-o\x00type=local,dest=x\x00."))
	f.Add([]byte("\x00run\x00-v\x00/srv/../etc:/x\x00img"))
	p := DefaultPolicy()
	tab, err := Compile(p)
	if err != nil {
		f.Fatal(err)
	}
	d := newDirect(p)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		bin := Binary(data[0] % byte(NumBinaries))
		argv := []string{"docker"}
		for _, a := range bytes.Split(data[1:], []byte{0}) {
			argv = append(argv, string(a))
		}
		if len(data) > 1 && data[1] == 0 {
			argv = argv[1:] // an argv[0] of its own
		}
		compare(t, tab, d, bin, argv)
		dec := tab.Decide(bin, argv)
		if dec.Reason == "" || (dec.Verdict != VerdictAllow && dec.Verdict != VerdictBlock && dec.Verdict != VerdictAudit && dec.Verdict != VerdictUndecided) {
			t.Fatalf("%q: bad decision %+v", argv, dec)
		}
		_ = fmt.Sprint(dec)
	})
}

package loader

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"

	"github.com/dockwatch/dockwatch/internal/policy"
	"github.com/dockwatch/dockwatch/internal/testutil/corpus"
)

// loadTestClassifier loads the SEC("syscall") wrapper, or skips when this machine cannot.
func loadTestClassifier(tb testing.TB) *TestClassifier {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("loading BPF programs needs root")
	}
	if err := features.HaveProgramType(ebpf.Syscall); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			tb.Skipf("kernel has no BPF_PROG_TYPE_SYSCALL: %v", err)
		}
		tb.Fatalf("probe BPF_PROG_TYPE_SYSCALL: %v", err)
	}
	c, err := NewTestClassifier()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func compile(tb testing.TB, p policy.Policy) *policy.Tables {
	tb.Helper()
	t, err := policy.Compile(p)
	if err != nil {
		tb.Fatalf("compile policy: %v", err)
	}
	return t
}

func loadTables(tb testing.TB, c *TestClassifier, t *policy.Tables) {
	tb.Helper()
	if err := WriteTables(c.Maps(), t); err != nil {
		tb.Fatalf("write tables: %v", err)
	}
}

// differ classifies argv with both interpreters and reports a difference.
func differ(tb testing.TB, c *TestClassifier, t *policy.Tables, bin policy.Binary, argv []string) bool {
	tb.Helper()
	want := t.Eval(bin, argv)
	got, err := c.Classify(bin, argv)
	if err != nil {
		tb.Fatalf("classify %s %q: %v", bin, argv, err)
	}
	if got.Result != want {
		tb.Errorf("%s %q:\n  bpf %+v (tokens %d, truncated %v, fault %v)\n  go  %+v",
			bin, argv, got.Result, got.Tokens, got.Truncated, got.Fault, want)
		return true
	}
	if got.Fault {
		tb.Errorf("%s %q: reader fault", bin, argv)
		return true
	}
	return false
}

type corpusCase struct {
	line int
	bin  policy.Binary
	argv []string
}

// corpusCases reads the labelled corpus: every row's argv, and the argv the CLI gave a
// compose or buildx plugin, each with its binary.
func corpusCases(tb testing.TB) []corpusCase {
	tb.Helper()
	var cases []corpusCase
	for _, r := range corpus.Read(tb) {
		c := corpusCase{line: r.Line, argv: r.Argv}
		c.bin, _ = policy.ParseBinary(r.Grammar())
		cases = append(cases, c)
		if r.PluginArgv != nil {
			p := corpusCase{line: r.Line, argv: r.PluginArgv}
			p.bin, _ = policy.ParseBinary(r.Plugin)
			cases = append(cases, p)
		}
	}
	return cases
}

// testPolicies are the policies the differential test runs: the default, one that turns every
// block into an audit and escape off, and one that mixes block and audit.
func testPolicies() map[string]policy.Policy {
	audit := policy.DefaultPolicy()
	audit.Mode = policy.ActionAudit
	audit.Escape = policy.ActionOff
	mixed := policy.DefaultPolicy()
	mixed.Escape = policy.ActionAudit
	return map[string]policy.Policy{"default": policy.DefaultPolicy(), "audit-escape-off": audit, "escape-audit": mixed}
}

func TestBPFClassifyCorpus(t *testing.T) {
	c := loadTestClassifier(t)
	cases := corpusCases(t)
	for _, name := range []string{"default", "audit-escape-off", "escape-audit"} {
		tab := compile(t, testPolicies()[name])
		loadTables(t, c, tab)
		mismatches := 0
		for _, cc := range cases {
			if differ(t, c, tab, cc.bin, cc.argv) {
				mismatches++
				t.Logf("  (policy %s, docker-argv.tsv:%d)", name, cc.line)
			}
		}
		t.Logf("policy %s: %d corpus argv, %d mismatches", name, len(cases), mismatches)
	}
}

// argvGen draws argv from the lexicon of a table, walking the command tree so that leaves and
// their flags are reached, with the lexical corner cases of docs/tables.md mixed in.
type argvGen struct {
	r      *rand.Rand
	t      *policy.Tables
	words  map[uint16][]policy.LexKey // by node
	flags  map[uint16][]policy.LexKey // long and short, by node
	allKey []policy.LexKey
	// ruleFlags are the flags with a rule effect, by node; targets[bin] the nodes that have
	// some, and paths[node] the command words that lead there from the binary's entry.
	ruleFlags map[uint16][]policy.LexKey
	targets   [policy.NumBinaries][]uint16
	paths     map[uint16][]string
}

func newArgvGen(t *policy.Tables, seed uint64) *argvGen {
	g := &argvGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), t: t,
		words: map[uint16][]policy.LexKey{}, flags: map[uint16][]policy.LexKey{}}
	for k := range t.Lexicon {
		g.allKey = append(g.allKey, k)
	}
	// Map order is random: sort, so that a seed reproduces.
	sort.Slice(g.allKey, func(i, j int) bool {
		a, b := g.allKey[i], g.allKey[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return string(a.Name[:a.Len]) < string(b.Name[:b.Len])
	})
	g.ruleFlags, g.paths = map[uint16][]policy.LexKey{}, map[uint16][]string{}
	for _, k := range g.allKey {
		if k.Kind == policy.LexWord {
			g.words[k.Node] = append(g.words[k.Node], k)
			continue
		}
		g.flags[k.Node] = append(g.flags[k.Node], k)
		if e := t.Lexicon[k].Target; e != 0 && t.Effects[e].Kind == policy.EffectRule {
			g.ruleFlags[k.Node] = append(g.ruleFlags[k.Node], k)
		}
	}
	for bin := policy.BinDocker; bin < policy.NumBinaries; bin++ {
		// Breadth first, so that every node gets its shortest spelling.
		seen := map[uint16]bool{t.Entries[bin]: true}
		queue := []uint16{t.Entries[bin]}
		g.paths[t.Entries[bin]] = nil
		for len(queue) > 0 {
			n := queue[0]
			queue = queue[1:]
			if len(g.ruleFlags[n]) > 0 || t.Nodes[n].LeafEffect != 0 {
				g.targets[bin] = append(g.targets[bin], n)
			}
			for _, w := range g.words[n] {
				c := t.Lexicon[w].Target
				if !seen[c] {
					seen[c] = true
					g.paths[c] = append(append([]string(nil), g.paths[n]...), keyName(w))
					queue = append(queue, c)
				}
			}
		}
	}
	return g
}

var genValues = []string{
	"", "-", "--", "=", ",", ":", "/", "//", "/.", "/..", "/./", "/../", ".", "..", "./x", "../x", "a/b",
	"vol", "data", "/etc", "/etc/", "/etc//", "//etc", "/./etc", "/etc/.", "/etc/..", "/etc/../tmp",
	"/etcx", "/et", "/e", "/home/user", "/home", "/var", "/var/lib", "/var/lib/docker/volumes", "/run",
	"/run/docker.sock", "/var/run/docker.sock", "/var/run", "/tmp/x", "/nix/store", "/dev/sda", "/sys",
	"/proc/1", "/boot/", "/root", "/srv", "/etc:/x", "/srv:/x", "vol:/x", "./x:/x", "/:/host",
	"/etc:/x:ro", "/tmp:/tmp", ":/x", "C:/x", "host", "container:x", "container:", "none", "bridge",
	"private", "unconfined", "seccomp=unconfined", "apparmor=unconfined", "label=disable",
	"label:disable", "no-new-privileges=false", "no-new-privileges", "systempaths=unconfined",
	"type=bind,source=/etc,target=/x", "type=bind,src=/,dst=/x", "type=bind,SRC=/etc,target=/x",
	"type=bind,Source=/srv,target=/x", "type=volume,source=vol,target=/x", "source=/home",
	"src=\"/etc\"", "\"src=/etc\"", "type=bind,source=/etc/,target=/x,readonly", "src=/etc,,",
	"devİce=/dev/sda", "devİce=/srv", "source\u212a=/etc", "\u212aey=/etc", "device=/dev/null",
	"volume-opt=device=/etc", "VOLUME-OPT=o=bind", "o=bind,device=/etc", "device=/srv", "DEVICE=/etc",
	"SRC\xff=/etc", "src=/etc\xff", "\xc4=/etc", "\xe2\x84=/etc", "\xe2\x84\xaa", "İ",
	"*.output=type=local,dest=out", "*.output=type=registry", "app.output=x", "*.push=true",
	"*.tags=x", "x.output", "output", "type=local,dest=out", "type=registry", "-", "type=docker",
	"security.insecure", "network.host", "network.none", "security.insecure,network.host",
	"true", "false", "1", "0", "t", "f", "T", "F", "TRUE", "FALSE", "True", "False", "yes", "tRue",
	"test.v", "-test.v", "test.", "test", "\xff\xfe", "\x80", "é", "日本", "-x", "--x", "ps", "exec",
	"compose", "buildx", "help", "--help", "-h", "run", "build",
}

func (g *argvGen) pick(s []string) string { return s[g.r.IntN(len(s))] }

var (
	genPathHeads = []string{"", "/", "/etc", "/srv", "/home", "/home/u", "/var/lib/docker", "/var/lib",
		"/run/docker.sock", "/var/run", "/nix", "/tmp", ".", "..", "x", "a/b", "vol", "/proc/self", "/sysx"}
	genPathTails = []string{"", "", "", "/", "//", "/.", "/..", "/./x", "/../x", "//x", "/x", "x", "/etc", "/.x", "/..x"}
	genMountKeys = []string{"source", "src", "SOURCE", "Src", "volume-opt", "device", "devİce", "Key", "target", "type", "", "soÿurce"}
)

// pathValue is a bind source, a volume spec or a mount/option CSV around a generated path.
func (g *argvGen) pathValue() string {
	path := g.pick(genPathHeads) + g.pick(genPathTails)
	switch g.r.IntN(5) {
	case 0:
		return path
	case 1, 2:
		return path + g.pick([]string{":/x", ":/x:ro", ":", "::", ":/etc"})
	case 3:
		return "type=bind," + g.pick(genMountKeys) + "=" + path + g.pick([]string{"", ",target=/x", ",readonly", ",x"})
	}
	return g.pick(genMountKeys) + "=" + g.pick([]string{"", "o=bind,", "device="}) + path
}

// value is a flag value: mostly from genValues, sometimes random bytes or a long string.
func (g *argvGen) value() string {
	switch n := g.r.IntN(20); {
	case n < 8:
		return g.pick(genValues)
	case n < 15:
		return g.pathValue()
	case n < 17:
		b := make([]byte, 1+g.r.IntN(12))
		for i := range b {
			b[i] = byte(1 + g.r.IntN(255)) // anything but NUL
		}
		return string(b)
	case n < 18:
		return "/etc/" + strings.Repeat("a", 240+g.r.IntN(30)) // around VALUE_MAX
	case n < 19:
		return "type=bind,source=/srv,target=/x," + strings.Repeat("b=c,", 50+g.r.IntN(10))
	default:
		return g.pick(genValues) + g.pick(genValues)
	}
}

func keyName(k policy.LexKey) string { return string(k.Name[:k.Len]) }

// flagToken spells flag k in one of its forms; the returned value, if any, is the next token.
func (g *argvGen) flagTokens(k policy.LexKey) []string {
	name := keyName(k)
	takes := g.t.Lexicon[k].TakesValue != 0
	if k.Kind == policy.LexLong {
		switch {
		case takes && g.r.IntN(3) == 0:
			return []string{"--" + name + "=" + g.value()}
		case takes && g.r.IntN(10) == 0:
			return []string{"--" + name} // value missing, or the next token becomes it
		case takes:
			return []string{"--" + name, g.value()}
		case g.r.IntN(4) == 0:
			return []string{"--" + name + "=" + g.pick([]string{"true", "false", "1", "0", "T", "F", "maybe", "", "TRUE", "tRUE"})}
		}
		return []string{"--" + name}
	}
	// shorthand: alone, in a cluster, with =, attached value, or "test." tails
	tok := "-"
	for n := g.r.IntN(3); n > 0; n-- {
		if o := g.randomFlag(k.Node, policy.LexShort); o != nil && g.t.Lexicon[*o].TakesValue == 0 {
			tok += keyName(*o)
		}
	}
	tok += name
	switch n := g.r.IntN(12); {
	case n == 0:
		return []string{tok + "=" + g.value()}
	case n == 1:
		return []string{tok + "test.v"}
	case n == 2 && takes:
		return []string{tok + g.value()}
	case n == 3:
		return []string{tok + "="}
	case n == 4:
		return []string{tok + g.pick([]string{"true", "=false", "=1", "=x", "zz", "test.", "-"})}
	case takes:
		return []string{tok, g.value()}
	}
	return []string{tok}
}

func (g *argvGen) randomFlag(node uint16, kind uint8) *policy.LexKey {
	fs := g.flags[node]
	for range 8 {
		if len(fs) == 0 {
			return nil
		}
		k := fs[g.r.IntN(len(fs))]
		if k.Kind == kind {
			return &k
		}
	}
	return nil
}

// noise is a token that is not (necessarily) valid where it is put.
func (g *argvGen) noise() string {
	switch g.r.IntN(10) {
	case 0:
		return g.pick([]string{"--", "-", "", "---", "---x", "--=", "-=", "--help", "-h", "--help=false", "-h=0", "--test.v", "-test.v", "-test", "help"})
	case 1, 2:
		k := g.allKey[g.r.IntN(len(g.allKey))]
		switch k.Kind {
		case policy.LexLong:
			return "--" + keyName(k)
		case policy.LexShort:
			return "-" + keyName(k)
		}
		return keyName(k)
	case 3:
		return "-" + strings.Repeat(g.pick([]string{"d", "q", "i", "t", "a", "D"}), 30+g.r.IntN(5))
	case 4:
		return "--" + strings.Repeat("x", 30+g.r.IntN(5))
	}
	return g.value()
}

// argv builds one argv of binary bin.
func (g *argvGen) argv(bin policy.Binary) []string {
	argv := []string{g.pick([]string{"docker", "docker-compose", "docker-buildx", "/usr/bin/docker", ""})}
	if bin == policy.BinCompose && g.r.IntN(2) == 0 {
		argv = append(argv, "compose") // plugin mode
	}
	if bin == policy.BinBuildx && g.r.IntN(2) == 0 {
		argv = append(argv, "buildx")
	}
	node := g.t.Entries[bin]
	focused := false
	if ts := g.targets[bin]; len(ts) > 0 && g.r.IntN(2) == 0 {
		// Go straight to a command with rule flags or a rule of its own, and mostly use
		// those flags, with few tokens that would end parsing early.
		node = ts[g.r.IntN(len(ts))]
		argv = append(argv, g.paths[node]...)
		focused = true
	}
	n := len(argv) + g.r.IntN(10)
	if g.r.IntN(50) == 0 {
		n = 240 + g.r.IntN(30) // around MAX_TOKENS
	}
	for len(argv) < n {
		r := g.r.IntN(20)
		if focused {
			r = 7 + g.r.IntN(9) // rule flags, flags, values; no words, no noise
		}
		switch {
		case r < 7:
			if ws := g.words[node]; len(ws) > 0 {
				w := ws[g.r.IntN(len(ws))]
				argv = append(argv, keyName(w))
				node = g.t.Lexicon[w].Target
				continue
			}
			argv = append(argv, g.value())
		case r < 11:
			if fs := g.ruleFlags[node]; len(fs) > 0 {
				argv = append(argv, g.flagTokens(fs[g.r.IntN(len(fs))])...)
				continue
			}
			argv = append(argv, g.noise())
		case r < 15:
			if fs := g.flags[node]; len(fs) > 0 {
				argv = append(argv, g.flagTokens(fs[g.r.IntN(len(fs))])...)
				continue
			}
			argv = append(argv, g.noise())
		case r < 17:
			argv = append(argv, g.value())
		default:
			argv = append(argv, g.noise())
		}
	}
	if g.r.IntN(50) == 0 {
		// Pad to around MAX_ARGV_BYTES.
		size := len(JoinArgv(argv))
		if want := policy.MaxArgvBytes - 3 + g.r.IntN(7) - size - 1; want > 0 {
			argv = append(argv, strings.Repeat("z", want))
		}
	}
	return argv
}

func TestBPFClassifyRandom(t *testing.T) {
	c := loadTestClassifier(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DOCKWATCH_CLASSIFY_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("DOCKWATCH_CLASSIFY_SEED=%q: %v", s, err)
		}
	}
	perBinary := 100000
	if testing.Short() {
		perBinary = 5000
	}
	t.Logf("seed %d (rerun with DOCKWATCH_CLASSIFY_SEED=%d), %d argv per binary and policy", seed, seed, perBinary)
	for _, name := range []string{"default", "audit-escape-off", "escape-audit"} {
		tab := compile(t, testPolicies()[name])
		loadTables(t, c, tab)
		g := newArgvGen(tab, seed)
		verdicts, rules := map[policy.Verdict]int{}, map[policy.Rule]int{}
		mismatches := 0
		for bin := policy.BinDocker; bin < policy.NumBinaries; bin++ {
			for range perBinary {
				argv := g.argv(bin)
				r := tab.Eval(bin, argv)
				verdicts[r.Verdict]++
				rules[r.Rule]++
				if differ(t, c, tab, bin, argv) {
					mismatches++
					if mismatches >= 20 {
						t.Fatalf("policy %s: too many mismatches", name)
					}
				}
			}
		}
		t.Logf("policy %s: verdicts %v, rules %v, %d mismatches", name, verdicts, rules, mismatches)
	}
}

// TestBPFArgvLimits checks the reader at the limits of docs/tables.md.
func TestBPFArgvLimits(t *testing.T) {
	c := loadTestClassifier(t)
	tab := compile(t, policy.DefaultPolicy())
	loadTables(t, c, tab)
	tokens := func(n int) []string {
		argv := []string{"docker", "ps"}
		for len(argv) < n {
			argv = append(argv, "-a")
		}
		return argv
	}
	bytes := func(n int) []string {
		argv := []string{"docker", "ps", "--format"}
		return append(argv, strings.Repeat("x", n-len(JoinArgv(argv))-1))
	}
	for _, tc := range []struct {
		name      string
		argv      []string
		truncated bool
	}{
		{"256 tokens", tokens(policy.MaxTokens), false},
		{"257 tokens", tokens(policy.MaxTokens + 1), true},
		{"8192 bytes", bytes(policy.MaxArgvBytes), false},
		{"8193 bytes", bytes(policy.MaxArgvBytes + 1), true},
		{"16000 bytes", bytes(16000), true},
	} {
		got, err := c.Classify(policy.BinDocker, tc.argv)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := tab.Eval(policy.BinDocker, tc.argv)
		if got.Result != want || got.Truncated != tc.truncated || got.Fault {
			t.Errorf("%s: bpf %+v truncated %v fault %v, go %+v, want truncated %v",
				tc.name, got.Result, got.Truncated, got.Fault, want, tc.truncated)
		}
		if tc.truncated != (want.Verdict == policy.VerdictUndecided) {
			t.Errorf("%s: go verdict %v", tc.name, want.Verdict)
		}
	}
}

// TestWriteTablesSwap checks that a reload replaces every table, the lexicon included.
func TestWriteTablesSwap(t *testing.T) {
	c := loadTestClassifier(t)
	full := compile(t, policy.DefaultPolicy())
	noPlugins := policy.DefaultPolicy()
	noPlugins.Plugins = nil
	small := compile(t, noPlugins)
	probe := [][]string{{"docker", "compose", "ps"}, {"docker", "buildx", "build", "."}, {"docker", "exec", "c", "sh"}}
	for round, tab := range []*policy.Tables{full, small, full, small} {
		loadTables(t, c, tab)
		var gen uint32
		if err := c.Maps().Gen.Lookup(uint32(0), &gen); err != nil {
			t.Fatal(err)
		}
		live := 0
		var k policy.LexKey
		var v policy.LexVal
		it := c.Maps().Lexicon.Iterate()
		for it.Next(&k, &v) {
			if uint32(k.Node)/nodesPerGen == gen {
				live++
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if live != len(tab.Lexicon) {
			t.Errorf("round %d: %d lexicon entries in generation %d, want %d", round, live, gen, len(tab.Lexicon))
		}
		for _, argv := range probe {
			differ(t, c, tab, policy.BinDocker, argv)
		}
	}
}

// benchArgv is a plausible docker run argv of about size bytes: "-e VAR=value" pairs with
// values of valueLen bytes in front of a bind mount and an image.
func benchArgv(size, valueLen int) []string {
	argv := []string{"docker", "run", "--rm", "-v", "/srv/data:/data", "busybox"}
	for i := 0; len(JoinArgv(argv)) < size-valueLen-10; i++ {
		env := fmt.Sprintf("VAR%d=%s", i, strings.Repeat("v", valueLen))
		argv = append(argv[:2], append([]string{"-e", env}, argv[2:]...)...)
	}
	return argv
}

func BenchmarkBPFClassify(b *testing.B) {
	c := loadTestClassifier(b)
	tab := compile(b, policy.DefaultPolicy())
	loadTables(b, c, tab)
	for _, bc := range []struct {
		name           string
		size, valueLen int
	}{
		{"50B", 50, 30}, {"1KiB", 1024, 30}, {"4KiB", 4096, 30}, {"4KiB-long-values", 4096, 200},
	} {
		argv := benchArgv(bc.size, bc.valueLen)
		raw := JoinArgv(argv)
		b.Run(bc.name, func(b *testing.B) {
			want := tab.Eval(policy.BinDocker, argv)
			var kernel time.Duration
			const chunk = 10000
			for done := 0; done < b.N; {
				n := min(b.N-done, chunk)
				got, err := c.Run(policy.BinDocker, raw, uint32(n))
				if err != nil {
					b.Fatal(err)
				}
				if got.Result != want {
					b.Fatalf("bpf %+v, go %+v", got.Result, want)
				}
				kernel += got.Elapsed
				done += n
			}
			b.ReportMetric(float64(kernel.Nanoseconds())/float64(b.N), "bpf-ns/op")
			// The same argv read but not classified (no such binary): the reader's share.
			read, err := c.Run(policy.NumBinaries, raw, chunk)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(read.Elapsed.Nanoseconds())/chunk, "read-ns/op")
			b.ReportMetric(float64(len(raw)), "argv-bytes")
			b.ReportMetric(float64(len(argv)), "tokens")
		})
	}
}

// verifierBudget bounds the verifier's work on the classifier. The kernel gives up at 1M
// processed instructions; staying well below leaves room for the exec hook around it and for
// other kernels' verifiers.
const verifierBudget = 500000

var processedRe = regexp.MustCompile(`processed (\d+) insns`)

// TestBPFClassifierVerifierCost loads the wrapper with verifier statistics and checks the
// verifier's work against verifierBudget.
func TestBPFClassifierVerifierCost(t *testing.T) {
	loadTestClassifier(t) // skips where the wrapper cannot load
	spec, err := loadClassifyTest()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		t.Fatalf("load: %+v", err)
	}
	defer coll.Close()
	prog := coll.Programs["classify_test"]
	m := processedRe.FindStringSubmatch(prog.VerifierLog)
	if m == nil {
		t.Fatalf("no instruction count in the verifier log:\n%s", prog.VerifierLog)
	}
	var processed int
	fmt.Sscan(m[1], &processed)
	xlated := 0
	if info, err := prog.Info(); err == nil {
		if ins, err := info.Instructions(); err == nil {
			xlated = len(ins)
		}
	}
	t.Logf("verifier: %s; %d instructions after verification", strings.TrimSpace(m[0]), xlated)
	if processed > verifierBudget {
		t.Errorf("verifier processed %d instructions, budget %d", processed, verifierBudget)
	}
}

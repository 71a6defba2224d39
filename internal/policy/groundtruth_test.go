package policy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/policy"
	"github.com/dockwatch/dockwatch/internal/testutil/fakeapi"
)

// The ground truth for the classifier is what the real docker CLI does. TestGroundTruth runs
// every runnable corpus row, and variants of the BLOCK and ALLOW rows, with the docker CLI on
// PATH against the recording fake Engine API, and checks the Go classifier against the API
// calls that really happened:
//
//   - an argv the classifier allows must not reach a blocked endpoint (fakeapi.Blocked) or ask
//     for a host escape (fakeapi.Escapes): that would be a bypass;
//   - an argv the classifier blocks must reach one, unless the CLI refused it before any API
//     call (reported as "blocked, CLI refused anyway"), the escape rule is being conservative
//     (reported), or the corpus labels the row BLOCK for a reason the fake cannot show (for
//     example `trust sign`, which needs a notary server).

const (
	gtTimeout = 10 * time.Second
	// demoDir is the corpus's placeholder directory; every case gets its own copy.
	demoDir = "/srv/demo"
	// gtHost is the -H value variants use; demoDir in it is rewritten like any path.
	gtHost = "unix://" + demoDir + "/fake.sock"
	// dialStdioRequest is the corpus's name for the request file under the demo dir.
	dialStdioRequest = "dialstdio-req.txt"
)

var (
	gtSeed   = flag.Uint64("groundtruth.seed", 1, "seed of TestGroundTruth's random argv")
	gtRandom = flag.Int("groundtruth.random", 250, "how many random argv TestGroundTruth runs")
	gtFull   = flag.Bool("groundtruth.full", false, "run every variant, not a sample (takes minutes)")
)

// gtCase is one docker command line to run.
type gtCase struct {
	origin string // "docker-argv.tsv:12" or "docker-argv.tsv:12 variant: <how>"
	label  string // BLOCK, ALLOW or ANY for corpus rows; "" for variants
	argv   []string
	env    map[string]string // extra environment; "<unset>" removes the variable
	// stdin is a file name under the demo dir, or "" for dialStdioRequest: every command gets
	// a raw API request on stdin, so any argv that turns the CLI into a tunnel (system
	// dial-stdio however spelled) shows it by reaching the fake.
	stdin string
}

func (c gtCase) key() string {
	keys := make([]string, 0, len(c.env))
	for k, v := range c.env {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return strings.Join(c.argv, "\x00") + "\x01" + strings.Join(keys, "\x00") + "\x01" + c.stdin
}

// gtRun is what one case did.
type gtRun struct {
	c        gtCase
	argv     []string // as run, with the demo dir rewritten
	d        policy.Decision
	reqs     []fakeapi.Request
	exitCode int // -1: did not exit by itself (timeout) or could not start
	stderr   string
	err      error
}

// pluginDirs are the system CLI plugin directories of docker 28 (docker-cli-grammar.md §4).
var pluginDirs = []string{"/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
	"/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins"}

func pluginInstalled(name string) bool {
	for _, d := range pluginDirs {
		if fi, err := os.Stat(filepath.Join(d, "docker-"+name)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

func TestGroundTruth(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skipf("no docker CLI on PATH, so there is no ground truth to compare with: %v", err)
	}
	if out, err := exec.Command(docker, "--version").Output(); err != nil {
		t.Fatalf("%s --version: %v", docker, err)
	} else if !bytes.Contains(out, []byte("version 28.")) {
		t.Logf("warning: the grammar is docker 28.2.2's; %s is %s", docker, bytes.TrimSpace(out))
	} else {
		t.Logf("ground truth: %s (%s)", docker, bytes.TrimSpace(out))
	}
	tab := compileDefault(t)
	start := time.Now()

	var cases []gtCase
	seen := map[string]bool{}
	add := func(c gtCase) {
		if k := c.key(); !seen[k] {
			seen[k] = true
			cases = append(cases, c)
		}
	}
	skipped := 0
	var corpusCases []gtCase
	for _, r := range loadCorpus(t) {
		origin := fmt.Sprintf("docker-argv.tsv:%d", r.Line)
		if why := gtSkipReason(r); why != "" {
			t.Logf("skip %s %q: %s", origin, r.Argv, why)
			skipped++
			continue
		}
		c := gtCase{origin: origin, label: r.Expected, argv: r.Argv, env: maps.Clone(r.Env)}
		if rel, ok := strings.CutPrefix(r.Stdin, demoDir+"/"); ok {
			c.stdin = rel
		} else if r.Stdin == "/dev/null" {
			c.stdin = os.DevNull
		}
		add(c)
		corpusCases = append(corpusCases, c)
	}
	nCorpus := len(cases)
	for _, c := range corpusCases {
		if c.label == "BLOCK" || c.label == "ALLOW" {
			for _, v := range gtVariants(c, gtSample(2)) {
				add(v)
			}
		}
	}
	nVariants := len(cases) - nCorpus
	for i, argv := range gtExtra {
		c := gtCase{origin: fmt.Sprintf("extra %d", i), argv: argv}
		add(c)
		for _, v := range gtVariants(c, gtSample(4)) {
			add(v)
		}
	}
	nExtra := len(cases) - nCorpus - nVariants
	for i, argv := range gtRandomArgv(t, *gtSeed, *gtRandom) {
		add(gtCase{origin: fmt.Sprintf("random %d (seed %d)", i, *gtSeed), argv: argv})
	}

	base := t.TempDir()
	runs := make([]gtRun, len(cases))
	workers := min(2*runtime.NumCPU(), 8)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				runs[i] = gtRunCase(docker, base, cases[i])
				runs[i].d = tab.Decide(policy.BinDocker, runs[i].argv)
			}
		}()
	}
	for i := range cases {
		next <- i
	}
	close(next)
	wg.Wait()

	var bypass, overblock, refused, unknownWord, failed, conservative, labelled, timeouts, errs int
	for _, r := range runs {
		if r.err != nil {
			t.Errorf("%s: run %q: %v", r.c.origin, r.argv, r.err)
			errs++
			continue
		}
		if r.exitCode == -1 {
			timeouts++
			t.Logf("timeout after %s %s: %s; requests: %s", gtTimeout, r.c.origin, gtArgv(r.argv), gtReqs(r.reqs))
		}
		blocked := fakeapi.Blocked(r.reqs)
		escapes := fakeapi.Escapes(r.reqs, policy.DefaultSensitivePaths)
		blocks := r.d.Verdict == policy.VerdictBlock || r.d.Verdict == policy.VerdictUndecided
		switch {
		case !blocks && len(blocked) > 0:
			bypass++
			t.Errorf("BYPASS %s: %s\n\tclassifier: %s\n\treached blocked endpoints: %s\n\tall requests: %s\n\texit %d, stderr: %s",
				r.c.origin, gtArgv(r.argv), gtDecision(r.d), gtReqs(blocked), gtReqs(r.reqs), r.exitCode, r.stderr)
		case !blocks && len(escapes) > 0:
			bypass++
			t.Errorf("ESCAPE BYPASS %s: %s\n\tclassifier: %s\n\tescapes: %v\n\tall requests: %s",
				r.c.origin, gtArgv(r.argv), gtDecision(r.d), escapes[0].Reasons, gtReqs(r.reqs))
		case !blocks || len(blocked) > 0 || len(escapes) > 0:
			// Agreement.
		case r.exitCode != 0 && len(apiCalls(r.reqs)) == 0:
			refused++
			t.Logf("blocked, CLI refused anyway %s: %s (%s; exit %d: %s)",
				r.c.origin, gtArgv(r.argv), gtDecision(r.d), r.exitCode, r.stderr)
		case r.d.Rule == policy.RuleUnknown && int(r.d.Result.Token) == commandIndex(r.argv) && len(apiCalls(r.reqs)) == 0:
			// An unknown command word is a plugin name; with docker-<word> in a plugin dir the
			// CLI would run it (even for --help), so the policy blocks the word itself.
			unknownWord++
			t.Logf("unknown command word blocked, CLI made no API call %s: %s (exit %d)", r.c.origin, gtArgv(r.argv), r.exitCode)
		case r.d.Rule == policy.RuleEscape:
			conservative++
			t.Logf("escape rule is conservative %s: %s (%s); requests: %s",
				r.c.origin, gtArgv(r.argv), gtDecision(r.d), gtReqs(r.reqs))
		case r.exitCode != 0 && r.d.Rule == policy.RuleBlockedSubcommand:
			// The CLI went for the blocked operation and failed on the fake's answers or on a
			// made-up argument (a container named "ctr:/etc/passwd", exec -t without a TTY).
			failed++
			t.Logf("blocked operation attempted, failed on the fake %s: %s (%s); requests: %s; exit %d: %s",
				r.c.origin, gtArgv(r.argv), gtDecision(r.d), gtReqs(r.reqs), r.exitCode, r.stderr)
		case r.c.label == "BLOCK":
			labelled++
			t.Logf("labelled BLOCK, nothing blocked reached here %s: %s (%s); requests: %s; exit %d: %s",
				r.c.origin, gtArgv(r.argv), gtDecision(r.d), gtReqs(r.reqs), r.exitCode, r.stderr)
		default:
			overblock++
			t.Errorf("OVERBLOCK %s: %s\n\tclassifier: %s\n\tbut the CLI reached nothing blocked: %s\n\texit %d, stderr: %s",
				r.c.origin, gtArgv(r.argv), gtDecision(r.d), gtReqs(r.reqs), r.exitCode, r.stderr)
		}
	}
	t.Logf("ground truth: %d argv run (%d corpus rows, %d variants, %d extra argv and variants, %d random; %d rows skipped) in %s with %d workers: "+
		"%d bypasses, %d over-blocks, %d blocked but refused by the CLI anyway, %d unknown command words, %d blocked operations that failed on the fake, "+
		"%d conservative escape blocks, "+
		"%d labelled-BLOCK rows without a blocked endpoint, %d timeouts, %d run errors",
		len(runs), nCorpus, nVariants, nExtra, len(runs)-nCorpus-nVariants-nExtra, skipped, time.Since(start).Round(time.Millisecond), workers,
		bypass, overblock, refused, unknownWord, failed, conservative, labelled, timeouts, errs)
}

func gtSample(n int) int {
	if *gtFull {
		return 1
	}
	return n
}

// gtSkipReason says why a corpus row cannot run with the docker CLI alone, or "".
func gtSkipReason(r corpusRow) string {
	if r.Binary != "" {
		return "needs another binary (binary: " + r.Binary + ")"
	}
	if r.bin != policy.BinDocker {
		return "not a docker CLI argv"
	}
	if r.Plugin != "" && !pluginInstalled(r.Plugin) {
		return "needs the docker-" + r.Plugin + " CLI plugin, which is not installed"
	}
	return ""
}

// rootValueLong and rootValueShort are docker's value-taking global flags
// (docker-cli-grammar.md §1).
var (
	rootValueLong  = map[string]bool{"config": true, "context": true, "host": true, "log-level": true, "tlscacert": true, "tlscert": true, "tlskey": true}
	rootValueShort = "cHl"
)

// commandIndex is the index of the command word in a docker argv: the first token after the
// global flags.
func commandIndex(argv []string) int {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--":
			return i + 1
		case !strings.HasPrefix(a, "-") || a == "-":
			return i
		case strings.HasPrefix(a, "--"):
			name, _, eq := strings.Cut(a[2:], "=")
			if rootValueLong[name] && !eq {
				i++
			}
		default:
			for j := 1; j < len(a); j++ {
				if strings.IndexByte(rootValueShort, a[j]) >= 0 {
					if j == len(a)-1 {
						i++
					}
					break
				}
				if j+1 < len(a) && a[j+1] == '=' {
					break
				}
			}
		}
	}
	return len(argv)
}

var (
	// Top-level commands and their management spelling (docker-cli-grammar.md §2).
	toManagement = map[string][]string{
		"attach": {"container", "attach"}, "commit": {"container", "commit"}, "cp": {"container", "cp"},
		"create": {"container", "create"}, "diff": {"container", "diff"}, "exec": {"container", "exec"},
		"export": {"container", "export"}, "inspect": {"container", "inspect"}, "kill": {"container", "kill"},
		"logs": {"container", "logs"}, "pause": {"container", "pause"}, "port": {"container", "port"},
		"rename": {"container", "rename"}, "restart": {"container", "restart"}, "rm": {"container", "rm"},
		"remove": {"container", "remove"}, "run": {"container", "run"}, "start": {"container", "start"},
		"stats": {"container", "stats"}, "stop": {"container", "stop"}, "top": {"container", "top"},
		"unpause": {"container", "unpause"}, "update": {"container", "update"}, "wait": {"container", "wait"},
		"ps": {"container", "ls"}, "history": {"image", "history"}, "import": {"image", "import"},
		"load": {"image", "load"}, "pull": {"image", "pull"}, "push": {"image", "push"},
		"rmi": {"image", "rm"}, "save": {"image", "save"}, "tag": {"image", "tag"}, "images": {"image", "ls"},
	}
	fromManagement = func() map[string]string {
		m := map[string]string{}
		for top, path := range toManagement {
			m[path[0]+" "+path[1]] = top
		}
		return m
	}()
	managementWords = []string{"container", "image", "system", "context", "trust", "plugin", "volume",
		"network", "checkpoint", "builder", "manifest", "config", "node", "secret", "service", "stack", "swarm"}
)

// gtVariants generates other spellings of a corpus argv: global flags in front (short, long,
// =value, clusters), the management or top-level path, help flags in each position, and other
// forms of the leaf's flags. The CLI decides what each one does. Only every sample-th global
// prefix is used (a different share for each argv).
func gtVariants(c gtCase, sample int) []gtCase {
	argv := c.argv
	if len(argv) < 2 || argv[0] != "docker" {
		return nil
	}
	ci := commandIndex(argv)
	globals, rest := slices.Clone(argv[1:ci]), slices.Clone(argv[ci:])
	usesHost := c.env["DOCKER_HOST"] == "<unset>" || slices.ContainsFunc(globals, func(g string) bool {
		return strings.HasPrefix(g, "-H") || strings.HasPrefix(g, "--host") || strings.HasPrefix(g, "-DH")
	})
	usesContext := slices.ContainsFunc(globals, func(g string) bool {
		return g == "-c" || strings.HasPrefix(g, "--context") || strings.HasPrefix(g, "-Dc")
	})
	var out []gtCase
	variant := func(how string, args ...[]string) {
		v := gtCase{origin: c.origin + " variant: " + how, env: c.env, stdin: c.stdin, argv: []string{"docker"}}
		for _, a := range args {
			v.argv = append(v.argv, a...)
		}
		out = append(out, v)
	}

	prefixes := [][]string{{"-D"}, {"--debug=true"}, {"-DD"}, {"-l", "info"}, {"-linfo"}, {"-l=warn"},
		{"--log-level=error"}, {"-Dl", "info"}, {"-D", "--log-level", "info"}, {"--tls"}, {"-v"},
		{"--help=false"}, {"-h=false"}, {"--help"}, {"-h"}, {"--config", demoDir + "/home/.docker"},
		{"--config=" + demoDir + "/home/.docker"}}
	if !usesHost {
		prefixes = append(prefixes, []string{"-c", "ctx"}, []string{"--context=ctx"}, []string{"-Dc", "ctx"})
	}
	if !usesContext && !usesHost {
		prefixes = append(prefixes, []string{"-H", gtHost}, []string{"-DH" + gtHost}, []string{"--host=" + gtHost})
	}
	offset := len(c.key())
	for i, p := range prefixes {
		if (i+offset)%sample == 0 {
			variant("global "+strings.Join(p, " "), p, globals, rest)
		}
	}
	if !slices.Contains(globals, "--") {
		variant("-- before the command", globals, []string{"--"}, rest)
	}
	if len(rest) == 0 {
		return out
	}

	// The same command by its other path.
	if path, ok := toManagement[rest[0]]; ok {
		variant("management path", globals, path, rest[1:])
	}
	if len(rest) >= 2 {
		if top, ok := fromManagement[rest[0]+" "+rest[1]]; ok {
			variant("top-level path", globals, []string{top}, rest[2:])
		}
	}

	// Help flags after each command word, and at the end.
	words := 1
	if slices.Contains(managementWords, rest[0]) && len(rest) >= 2 && !strings.HasPrefix(rest[1], "-") {
		words = 2
	}
	for w := 1; w <= words; w++ {
		for i, h := range []string{"--help=false", "-h=false", "--help", "-h", "--help=true", "-h=1"} {
			if (i+w+offset)%sample == 0 {
				variant(fmt.Sprintf("%s after word %d", h, w), globals, rest[:w], []string{h}, rest[w:])
			}
		}
	}
	variant("--help at the end", globals, rest, []string{"--help"})

	// Other spellings of the leaf's flags.
	leaf := rest[words:]
	for i := 0; i < len(leaf); i++ {
		a := leaf[i]
		nextIsValue := i+1 < len(leaf) && !strings.HasPrefix(leaf[i+1], "-")
		pre, post := rest[:words+i], leaf[i+1:]
		switch {
		case strings.HasPrefix(a, "--") && len(a) > 2 && !strings.Contains(a, "=") && nextIsValue:
			variant("leaf "+a+"=value", globals, pre, []string{a + "=" + leaf[i+1]}, leaf[i+2:])
		case len(a) == 2 && a[0] == '-' && a[1] != '-' && nextIsValue:
			variant("leaf "+a+"value attached", globals, pre, []string{a + leaf[i+1]}, leaf[i+2:])
			variant("leaf "+a+"=value", globals, pre, []string{a + "=" + leaf[i+1]}, leaf[i+2:])
		}
		if len(a) == 2 && a[0] == '-' && a[1] != '-' && i+1 < len(leaf) && len(leaf[i+1]) == 2 && leaf[i+1][0] == '-' && leaf[i+1][1] != '-' {
			variant("leaf cluster "+a+leaf[i+1][1:], globals, pre, []string{a + leaf[i+1][1:]}, leaf[i+2:])
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && !strings.Contains(a, "=") && !nextIsValue {
			var split []string
			for _, ch := range a[1:] {
				split = append(split, "-"+string(ch))
			}
			variant("leaf cluster split", globals, pre, split, post)
		}
		if strings.HasPrefix(a, "--") && !strings.Contains(a, "=") && !nextIsValue && len(a) > 2 {
			variant("leaf "+a+"=true", globals, pre, []string{a + "=true"}, post)
			variant("leaf "+a+"=false", globals, pre, []string{a + "=false"}, post)
		}
	}
	return out
}

// gtRunCase runs one case against its own fake API in its own demo directory.
func gtRunCase(docker, base string, c gtCase) (r gtRun) {
	r.c, r.exitCode = c, -1
	dir, err := os.MkdirTemp(base, "c")
	if err != nil {
		r.err = err
		return r
	}
	demo := filepath.Join(dir, "demo")
	sock := filepath.Join(demo, "fake.sock")
	rewrite := func(s string) string { return strings.ReplaceAll(s, demoDir, demo) }
	for _, a := range c.argv {
		r.argv = append(r.argv, rewrite(a))
	}
	if err := gtDemoFiles(demo, sock); err != nil {
		r.err = err
		return r
	}
	srv, err := fakeapi.Start(sock)
	if err != nil {
		r.err = err
		return r
	}
	defer srv.Close()

	env := map[string]string{
		"PATH":          os.Getenv("PATH"),
		"HOME":          filepath.Join(demo, "home"),
		"DOCKER_CONFIG": filepath.Join(demo, "home", ".docker"),
		"DOCKER_HOST":   "unix://" + sock,
	}
	for k, v := range c.env {
		if v == "<unset>" {
			delete(env, k)
		} else {
			env[k] = rewrite(v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), gtTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, docker, r.argv[1:]...)
	cmd.Args[0] = r.argv[0]
	cmd.Dir = demo
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdin := filepath.Join(demo, dialStdioRequest)
	switch {
	case c.stdin == os.DevNull:
		stdin = os.DevNull
	case c.stdin != "":
		stdin = filepath.Join(demo, c.stdin)
	}
	f, err := os.Open(stdin)
	if err != nil {
		r.err = err
		return r
	}
	defer f.Close()
	cmd.Stdin = f
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		r.exitCode = 0
	case ctx.Err() != nil:
		r.exitCode = -1
	case errors.As(err, &exitErr):
		r.exitCode = exitErr.ExitCode()
	default:
		r.err = fmt.Errorf("run docker: %w", err)
	}
	r.stderr = strings.TrimSpace(strings.ReplaceAll(stderr.String(), "\n", " | "))
	if len(r.stderr) > 300 {
		r.stderr = r.stderr[:300] + "…"
	}
	r.reqs = srv.Requests()
	return r
}

// gtDemoFiles creates what corpus argv refer to under the demo dir: tar files, an output dir,
// a config dir with a context "ctx" pointing at the fake, TLS files, a Dockerfile, and the
// request that dial-stdio rows send through the tunnel.
func gtDemoFiles(demo, sock string) error {
	cfg := filepath.Join(demo, "home", ".docker")
	ctxMeta := sha256.Sum256([]byte("ctx"))
	metaDir := filepath.Join(cfg, "contexts", "meta", hex.EncodeToString(ctxMeta[:]))
	for _, d := range []string{filepath.Join(demo, "out"), filepath.Join(demo, "tls"), filepath.Join(demo, "evilcfg"), metaDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	meta, err := json.Marshal(map[string]any{"Name": "ctx", "Metadata": map[string]any{},
		"Endpoints": map[string]any{"docker": map[string]any{"Host": "unix://" + sock, "SkipTLSVerify": false}}})
	if err != nil {
		return err
	}
	execBody := "{\"AttachStdout\":true,\"Cmd\":[\"sh\"]}"
	files := map[string][]byte{
		filepath.Join(metaDir, "meta.json"): meta,
		// An empty tar archive is two zero blocks.
		filepath.Join(demo, "empty.tar"):     make([]byte, 1024),
		filepath.Join(demo, "Dockerfile"):    []byte("FROM scratch\n"),
		filepath.Join(demo, "tls", "ca.pem"): nil,
		filepath.Join(cfg, "ca.pem"):         nil,
		// What `docker system dial-stdio` forwards: a hand-written request, no client User-Agent.
		filepath.Join(demo, dialStdioRequest): fmt.Appendf(nil, "POST /v%s/containers/ctr/exec HTTP/1.1\r\nHost: docker\r\n%s: 1\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			fakeapi.APIVersion, fakeapi.TunnelHeader, len(execBody), execBody),
	}
	for name, content := range files {
		if err := os.WriteFile(name, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

type limitedWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func apiCalls(reqs []fakeapi.Request) []fakeapi.Request {
	var out []fakeapi.Request
	for _, r := range reqs {
		if r.Path != "/_ping" {
			out = append(out, r)
		}
	}
	return out
}

func gtArgv(argv []string) string {
	b, _ := json.Marshal(argv)
	return string(b)
}

func gtDecision(d policy.Decision) string {
	return fmt.Sprintf("%s (rule %s, command %q: %s)", d.Verdict, d.Rule, d.Command, d.Reason)
}

func gtReqs(reqs []fakeapi.Request) string {
	if len(reqs) == 0 {
		return "none"
	}
	s := make([]string, len(reqs))
	for i, r := range reqs {
		s[i] = r.String()
	}
	return strings.Join(s, "; ")
}

// gtExtra are argv the corpus does not have: other spellings of the blocked operations, their
// flags, escape flags in every form, and ordinary commands that must stay allowed.
var gtExtra = [][]string{
	{"docker", "start", "-ai", "ctr"},
	{"docker", "start", "--attach=true", "ctr"},
	{"docker", "start", "-a=false", "ctr"},
	{"docker", "start", "--interactive=false", "--attach=0", "ctr"},
	{"docker", "container", "start", "-i", "ctr"},
	{"docker", "start", "ctr"},
	{"docker", "start", "--detach-keys", "ctrl-x", "-a", "ctr"},
	{"docker", "exec", "-d", "ctr", "sh"},
	{"docker", "exec", "-i", "-u", "root", "-w", "/", "-e", "A=1", "ctr", "sh"},
	{"docker", "exec", "--privileged", "--detach-keys=ctrl-x", "ctr", "sh"},
	{"docker", "exec", "ctr", "--", "sh"},
	{"docker", "exec", "--", "ctr", "sh"},
	{"docker", "cp", "-a", "ctr:/etc/passwd", "-"},
	{"docker", "cp", "--follow-link", "ctr:/etc", demoDir + "/out"},
	{"docker", "cp", demoDir + "/empty.tar", "ctr:/tmp"},
	{"docker", "container", "cp", "-q", demoDir + "/empty.tar", "ctr:/tmp/"},
	{"docker", "export", "--output=" + demoDir + "/out/e.tar", "ctr"},
	{"docker", "export", "-o=" + demoDir + "/out/e.tar", "ctr"},
	{"docker", "diff", "ctr"},
	{"docker", "container", "diff", "ctr"},
	{"docker", "commit", "-c", "CMD sh", "-m", "x", "ctr", "x:1"},
	{"docker", "commit", "--pause=false", "ctr"},
	{"docker", "image", "push", "-a", "x"},
	{"docker", "push", "--quiet", "registry.example.com/x:1"},
	{"docker", "image", "tag", "alpine", "x:1"},
	{"docker", "image", "save", "--output", demoDir + "/out/s.tar", "alpine"},
	{"docker", "save", "alpine"},
	{"docker", "image", "import", "-c", "CMD sh", demoDir + "/empty.tar"},
	{"docker", "import", "-", "x:1"},
	{"docker", "load"},
	{"docker", "image", "load", "--quiet", "--input=" + demoDir + "/empty.tar"},
	{"docker", "attach", "--no-stdin", "--sig-proxy=false", "ctr"},
	{"docker", "plugin", "push", "foo"},
	{"docker", "plugin", "push", "--disable-content-trust=false", "foo"},
	{"docker", "system", "dial-stdio"},
	{"docker", "__complete", "exec", ""},
	{"docker", "__complete", "cp", "ctr:"},
	{"docker", "__completeNoDesc", "attach", ""},
	{"docker", "completion", "bash"},
	{"docker", "help", "cp"},
	{"docker", "image", "--help", "save", "alpine"},
	{"docker", "container", "-h=0", "export", "ctr"},
	{"docker", "container", "--help=f", "cp", "ctr:/etc/passwd", "-"},
	{"docker", "run", "-v/:/host", "alpine"},
	{"docker", "run", "-v=/etc:/e", "alpine"},
	{"docker", "run", "--volume=/var/run/docker.sock:/s", "alpine"},
	{"docker", "run", "-v", "/var/run:/r", "alpine"},
	{"docker", "run", "-v", "/srv/data:/d", "-v", "named:/n", "alpine"},
	{"docker", "run", "-v", "/etcfoo:/x", "alpine"},
	{"docker", "run", "--mount", "type=bind,src=/,dst=/h", "alpine"},
	{"docker", "run", "--mount=type=bind,source=/home,target=/h,readonly", "alpine"},
	{"docker", "run", "--mount", "type=volume,src=v,dst=/d,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/etc", "alpine"},
	{"docker", "run", "--mount", "type=volume,src=v,dst=/d", "alpine"},
	{"docker", "run", "--device", "/dev/null", "alpine"},
	{"docker", "run", "--device-cgroup-rule", "c 1:3 mr", "alpine"},
	{"docker", "run", "--security-opt=seccomp:unconfined", "alpine"},
	{"docker", "run", "--security-opt", "label=disable", "alpine"},
	{"docker", "run", "--security-opt", "no-new-privileges=true", "alpine"},
	{"docker", "run", "--network=host", "alpine"},
	{"docker", "run", "--net", "container:ctr", "alpine"},
	{"docker", "run", "--network", "bridge", "alpine"},
	{"docker", "run", "--userns", "host", "--ipc=host", "alpine"},
	{"docker", "run", "--uts=host", "alpine"},
	{"docker", "run", "--cgroupns=host", "alpine"},
	{"docker", "run", "--pid", "container:ctr", "alpine"},
	{"docker", "run", "--privileged=false", "alpine"},
	{"docker", "run", "--privileged=true", "alpine"},
	{"docker", "run", "--cap-add", "NET_ADMIN", "alpine"},
	{"docker", "run", "--cap-drop", "ALL", "alpine"},
	{"docker", "run", "-d", "--name", "web", "-p", "8080:80", "alpine"},
	{"docker", "run", "-it", "--rm", "alpine", "sh"},
	{"docker", "run", "alpine", "--privileged"},
	{"docker", "container", "run", "--rm", "-v", "/:/host", "alpine"},
	{"docker", "create", "--volumes-from=ctr", "alpine"},
	{"docker", "container", "create", "-v", "/boot:/b", "alpine"},
	{"docker", "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device=/", "v"},
	{"docker", "volume", "create", "-o", "device=/srv/data", "v"},
	{"docker", "volume", "create", "v"},
	{"docker", "checkpoint", "create", "ctr", "cp1"},
	{"docker", "plugin", "install", "--grant-all-permissions", "foo"},
	{"docker", "ps", "-a", "-q"},
	{"docker", "images"},
	{"docker", "image", "ls", "-a"},
	{"docker", "inspect", "ctr"},
	{"docker", "image", "inspect", "alpine"},
	{"docker", "image", "history", "alpine"},
	{"docker", "top", "ctr"},
	{"docker", "wait", "ctr"},
	{"docker", "kill", "ctr"},
	{"docker", "restart", "ctr"},
	{"docker", "rm", "-f", "ctr"},
	{"docker", "container", "prune", "-f"},
	{"docker", "system", "prune", "-f"},
	{"docker", "network", "ls"},
	{"docker", "volume", "ls"},
	{"docker", "search", "alpine"},
	{"docker", "context", "use", "ctx"},
	{"docker", "builder", "prune", "-f"},
	{"docker", "image", "build", "-t", "x:1", "."},
	{"docker", "build", "-o", demoDir + "/out", "."},
	{"docker", "build", "--push", "."},
}

// gtTree is a command of the docker CLI tree in trees/.
type gtTree struct {
	Name         string
	Aliases      []string
	Hidden       bool
	Interspersed bool
	Flags        []gtFlag
	Sub          []*gtTree
}

type gtFlag struct {
	Name       string
	Shorthand  string
	TakesValue bool `json:"takes_value"`
	Persistent bool
	Hidden     bool
}

// Commands the random argv avoid: they need a registry, a notary or a terminal, not the API.
var gtRandomAvoid = []string{"login", "manifest", "trust", "search"}

// Values the random argv give flags: harmless ones, and the ones the escape rule looks for.
var gtValues = map[string][]string{
	"volume":       {"/:/host", "/etc:/e:ro", "vol:/data", demoDir + "/out:/o", "./rel:/r"},
	"mount":        {"type=bind,src=/,dst=/h", "type=bind,source=" + demoDir + "/out,target=/o", "type=volume,src=v,dst=/d,volume-opt=device=/etc,volume-opt=o=bind,volume-opt=type=none"},
	"pid":          {"host", "container:ctr", "private"},
	"ipc":          {"host", "container:ctr", "private"},
	"uts":          {"host", ""},
	"userns":       {"host", ""},
	"cgroupns":     {"host", "private"},
	"network":      {"host", "container:ctr", "bridge", "none"},
	"net":          {"host", "bridge"},
	"security-opt": {"seccomp=unconfined", "label=disable", "no-new-privileges=true", "apparmor:unconfined"},
	"cap-add":      {"ALL", "NET_ADMIN"},
	"device":       {"/dev/null"},
	"output":       {demoDir + "/out/x.tar"},
	"input":        {demoDir + "/empty.tar"},
	"file":         {demoDir + "/Dockerfile"},
	"format":       {"json", "{{.ID}}"},
	"filter":       {"status=running", "dangling=true"},
	"opt":          {"device=/", "type=none", "o=bind", "size=1m"},
	"log-level":    {"info", "debug", "bogus"},
	"context":      {"ctx"},
	"host":         {gtHost},
	"config":       {demoDir + "/home/.docker"},
	"tlscacert":    {demoDir + "/tls/ca.pem"},
}

var gtPositionals = []string{"ctr", "alpine", "sh", "ctr:/etc/passwd", "-", demoDir + "/empty.tar", "x:1", "exec", "."}

// gtRandomArgv makes n random docker argv from the CLI's own command tree: random global
// flags, a random command path (with help flags between the words now and then), random leaf
// flags in random forms (long, --x=v, -x v, -xv, -x=v, clusters) and positionals.
func gtRandomArgv(t *testing.T, seed uint64, n int) [][]string {
	raw, err := os.ReadFile(filepath.Join("trees", "docker-28.2.2.json"))
	if err != nil {
		t.Fatalf("read docker tree: %v", err)
	}
	var root gtTree
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatalf("parse docker tree: %v", err)
	}
	var out [][]string
	for i := range n {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		argv := []string{"docker"}
		for range r.IntN(3) {
			argv = append(argv, gtFlagForms(r, root.Flags[r.IntN(len(root.Flags))], nil)...)
		}
		node, inherited := &root, []gtFlag{{Name: "help", Shorthand: "h", Persistent: true}}
		for depth := 0; len(node.Sub) > 0; depth++ {
			if depth > 0 && r.IntN(10) == 0 {
				break
			}
			child := node.Sub[r.IntN(len(node.Sub))]
			if depth == 0 && slices.Contains(gtRandomAvoid, child.Name) {
				child = node.Sub[0]
			}
			word := child.Name
			if len(child.Aliases) > 0 && r.IntN(3) == 0 {
				word = child.Aliases[r.IntN(len(child.Aliases))]
			}
			if depth > 0 && r.IntN(8) == 0 {
				argv = append(argv, []string{"--help=false", "-h=false", "--help", "-h=0"}[r.IntN(4)])
			}
			argv = append(argv, word)
			node = child
		}
		flags := append(slices.Clone(inherited), node.Flags...)
		var leaf [][]string
		for range r.IntN(4) {
			leaf = append(leaf, gtFlagForms(r, flags[r.IntN(len(flags))], flags))
		}
		for range r.IntN(4) {
			leaf = append(leaf, []string{gtPositionals[r.IntN(len(gtPositionals))]})
		}
		if r.IntN(2) == 0 {
			r.Shuffle(len(leaf), func(a, b int) { leaf[a], leaf[b] = leaf[b], leaf[a] })
		}
		for _, l := range leaf {
			argv = append(argv, l...)
		}
		out = append(out, argv)
	}
	return out
}

// gtFlagForms spells flag f one of the ways pflag accepts (and now and then one it does not).
// others are flags a shorthand cluster may draw a second letter from.
func gtFlagForms(r *rand.Rand, f gtFlag, others []gtFlag) []string {
	if !f.TakesValue {
		forms := [][]string{{"--" + f.Name}, {"--" + f.Name + "=true"}, {"--" + f.Name + "=false"}}
		if f.Shorthand != "" {
			forms = append(forms, []string{"-" + f.Shorthand}, []string{"-" + f.Shorthand + "=false"})
			for _, o := range others {
				if o.Shorthand != "" && o.Shorthand != f.Shorthand && r.IntN(4) == 0 {
					cluster := "-" + f.Shorthand + o.Shorthand
					if o.TakesValue {
						forms = append(forms, []string{cluster, gtValue(r, o.Name)})
					} else {
						forms = append(forms, []string{cluster})
					}
					break
				}
			}
		}
		return forms[r.IntN(len(forms))]
	}
	v := gtValue(r, f.Name)
	forms := [][]string{{"--" + f.Name, v}, {"--" + f.Name + "=" + v}}
	if f.Shorthand != "" {
		forms = append(forms, []string{"-" + f.Shorthand, v}, []string{"-" + f.Shorthand + v}, []string{"-" + f.Shorthand + "=" + v})
	}
	return forms[r.IntN(len(forms))]
}

func gtValue(r *rand.Rand, name string) string {
	if vs, ok := gtValues[name]; ok {
		return vs[r.IntN(len(vs))]
	}
	return []string{"ctr", "x", "1", "alpine"}[r.IntN(4)]
}

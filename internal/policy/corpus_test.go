package policy_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// corpusRow is one labelled argv of testdata/docker-argv.tsv.
type corpusRow struct {
	line      int
	expected  string // BLOCK, ALLOW or ANY
	reason    string
	argv      []string
	bin       policy.Binary
	endpoints string
	plugin    []string // argv the CLI gave a plugin, if it exec'd one
	pluginBin policy.Binary
}

var (
	binaryRe = regexp.MustCompile(`\(binary: [^)]*/docker-(compose|buildx)\)`)
	pluginRe = regexp.MustCompile(`exec'd: docker-(compose|buildx) argv=(\[.*?\])`)
)

func loadCorpus(t testing.TB) []corpusRow {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "docker-argv.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []corpusRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.HasPrefix(text, "#") || strings.TrimSpace(text) == "" {
			continue
		}
		cols := strings.Split(text, "\t")
		if len(cols) < 3 {
			t.Fatalf("docker-argv.tsv:%d: want at least 3 columns, got %d", line, len(cols))
		}
		r := corpusRow{line: line, expected: cols[0], reason: cols[1], bin: policy.BinDocker}
		if err := json.Unmarshal([]byte(cols[2]), &r.argv); err != nil {
			t.Fatalf("docker-argv.tsv:%d: argv: %v", line, err)
		}
		if len(cols) > 3 {
			r.endpoints = cols[3]
			if m := pluginRe.FindStringSubmatch(cols[3]); m != nil && !strings.Contains(m[2], "…") {
				if err := json.Unmarshal([]byte(m[2]), &r.plugin); err == nil {
					r.pluginBin, _ = policy.ParseBinary(m[1])
				}
			}
		}
		if m := binaryRe.FindStringSubmatch(r.reason); m != nil {
			r.bin, _ = policy.ParseBinary(m[1])
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 100 {
		t.Fatalf("corpus has only %d rows", len(rows))
	}
	return rows
}

func compileDefault(t testing.TB) *policy.Tables {
	t.Helper()
	tab, err := policy.Compile(policy.DefaultPolicy())
	if err != nil {
		t.Fatalf("compile default policy: %v", err)
	}
	return tab
}

func TestCorpus(t *testing.T) {
	tab := compileDefault(t)
	for _, r := range loadCorpus(t) {
		d := tab.Decide(r.bin, r.argv)
		got := map[policy.Verdict]string{policy.VerdictAllow: "ALLOW", policy.VerdictBlock: "BLOCK", policy.VerdictUndecided: "BLOCK"}[d.Verdict]
		if r.expected != "ANY" && got != r.expected {
			t.Errorf("docker-argv.tsv:%d %s %q: got %s (rule %s, command %q: %s), want %s",
				r.line, r.bin, r.argv, got, d.Rule, d.Command, d.Reason, r.expected)
		}
		if r.plugin != nil {
			// The plugin the CLI exec'd must be judged the same way as the CLI itself.
			pd := tab.Decide(r.pluginBin, r.plugin)
			pgot := map[policy.Verdict]string{policy.VerdictAllow: "ALLOW", policy.VerdictBlock: "BLOCK"}[pd.Verdict]
			if r.expected != "ANY" && pgot != r.expected {
				t.Errorf("docker-argv.tsv:%d plugin %s %q: got %s (rule %s, %q: %s), want %s",
					r.line, r.pluginBin, r.plugin, pgot, pd.Rule, pd.Command, pd.Reason, r.expected)
			}
		}
	}
}

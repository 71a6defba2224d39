package policy_test

import (
	"testing"

	"github.com/dockwatch/dockwatch/internal/policy"
	"github.com/dockwatch/dockwatch/internal/testutil/corpus"
)

// corpusRow is one labelled argv of testdata/docker-argv.tsv with the binaries it is for.
type corpusRow struct {
	corpus.Row
	bin       policy.Binary // the grammar of Argv
	pluginBin policy.Binary // the grammar of PluginArgv
}

func loadCorpus(t testing.TB) []corpusRow {
	t.Helper()
	var rows []corpusRow
	for _, r := range corpus.Read(t) {
		row := corpusRow{Row: r}
		row.bin, _ = policy.ParseBinary(r.Grammar())
		row.pluginBin, _ = policy.ParseBinary(r.Plugin)
		rows = append(rows, row)
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
		d := tab.Decide(r.bin, r.Argv)
		got := map[policy.Verdict]string{policy.VerdictAllow: "ALLOW", policy.VerdictBlock: "BLOCK", policy.VerdictUndecided: "BLOCK"}[d.Verdict]
		if r.Expected != "ANY" && got != r.Expected {
			t.Errorf("docker-argv.tsv:%d %s %q: got %s (rule %s, command %q: %s), want %s",
				r.Line, r.bin, r.Argv, got, d.Rule, d.Command, d.Reason, r.Expected)
		}
		if r.PluginArgv != nil {
			// The plugin the CLI exec'd must be judged the same way as the CLI itself.
			pd := tab.Decide(r.pluginBin, r.PluginArgv)
			pgot := map[policy.Verdict]string{policy.VerdictAllow: "ALLOW", policy.VerdictBlock: "BLOCK"}[pd.Verdict]
			if r.Expected != "ANY" && pgot != r.Expected {
				t.Errorf("docker-argv.tsv:%d plugin %s %q: got %s (rule %s, %q: %s), want %s",
					r.Line, r.pluginBin, r.PluginArgv, pgot, pd.Rule, pd.Command, pd.Reason, r.Expected)
			}
		}
	}
}

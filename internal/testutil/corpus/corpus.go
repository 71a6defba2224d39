// Package corpus reads the labelled docker argv corpus, internal/policy/testdata/docker-argv.tsv
// (format: docs/tables.md), for every test that runs it: the Go classifier, the BPF classifier
// and the end-to-end suite.
package corpus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dockwatch/dockwatch/internal/testutil/gobuild"
)

// Row is one labelled argv. Lines are numbered from 1, comments and blank lines included.
type Row struct {
	Line      int
	Expected  string // BLOCK, ALLOW or ANY
	Reason    string
	Argv      []string
	Endpoints string // the fourth column: what the real CLI did; "" when absent

	// Notes in the reason.
	Env    map[string]string // "(env: K=V)"; the value "<unset>" means unset
	Binary string            // "(binary: PATH)": the argv is for PATH, not the docker CLI
	Stdin  string            // "(stdin: PATH)"

	// Plugin is the classified CLI plugin ("compose" or "buildx") the real CLI exec'd, from
	// the endpoints column, and PluginArgv the argv it gave it (nil when the column cuts it
	// short).
	Plugin     string
	PluginArgv []string
}

// Grammar is the classifier grammar the argv is for: "compose" or "buildx" when the row runs
// that plugin's binary directly, else "docker".
func (r Row) Grammar() string {
	for _, g := range []string{"compose", "buildx"} {
		if strings.HasSuffix(r.Binary, "/docker-"+g) {
			return g
		}
	}
	return "docker"
}

var (
	envNote    = regexp.MustCompile(`\(env: ([A-Z_]+)=([^)]*)\)`)
	binaryNote = regexp.MustCompile(`\(binary: ([^)]*)\)`)
	stdinNote  = regexp.MustCompile(`\(stdin: ([^)]*)\)`)
	pluginExec = regexp.MustCompile(`exec'd: docker-(compose|buildx) argv=(\[.*?\])`)
)

// Path is the corpus file in this checkout. Outside a checkout (a test binary run inside the
// VM matrix, next to a copy of its package's testdata/) it is testdata/docker-argv.tsv in the
// working directory.
func Path() (string, error) {
	root, err := gobuild.ModuleRoot()
	if err != nil {
		local := filepath.Join("testdata", "docker-argv.tsv")
		if _, serr := os.Stat(local); serr == nil {
			return local, nil
		}
		return "", err
	}
	return filepath.Join(root, "internal", "policy", "testdata", "docker-argv.tsv"), nil
}

// Read reads and parses the corpus, or fails tb.
func Read(tb testing.TB) []Row {
	tb.Helper()
	path, err := Path()
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read corpus: %v", err)
	}
	rows, err := Parse(string(b))
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	if len(rows) < 100 {
		tb.Fatalf("%s: only %d rows", path, len(rows))
	}
	return rows
}

// Parse parses corpus text.
func Parse(text string) ([]Row, error) {
	var rows []Row
	for i, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) < 3 {
			return nil, fmt.Errorf("line %d: %d columns, want at least 3", i+1, len(cols))
		}
		r := Row{Line: i + 1, Expected: cols[0], Reason: cols[1], Env: map[string]string{}}
		if err := json.Unmarshal([]byte(cols[2]), &r.Argv); err != nil {
			return nil, fmt.Errorf("line %d: argv: %w", i+1, err)
		}
		if len(r.Argv) == 0 {
			return nil, fmt.Errorf("line %d: empty argv", i+1)
		}
		for _, m := range envNote.FindAllStringSubmatch(r.Reason, -1) {
			r.Env[m[1]] = m[2]
		}
		if m := binaryNote.FindStringSubmatch(r.Reason); m != nil {
			r.Binary = m[1]
		}
		if m := stdinNote.FindStringSubmatch(r.Reason); m != nil {
			r.Stdin = m[1]
		}
		if len(cols) > 3 {
			r.Endpoints = cols[3]
			if m := pluginExec.FindStringSubmatch(r.Endpoints); m != nil {
				r.Plugin = m[1]
				// A long argv is cut short with an ellipsis; it is no argv then.
				if !strings.Contains(m[2], "…") {
					if err := json.Unmarshal([]byte(m[2]), &r.PluginArgv); err != nil {
						return nil, fmt.Errorf("line %d: plugin argv: %w", i+1, err)
					}
				}
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

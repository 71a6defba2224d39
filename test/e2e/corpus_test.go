package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// corpusRow is one line of internal/policy/testdata/docker-argv.tsv.
type corpusRow struct {
	Line     int
	Expected string // BLOCK, ALLOW or ANY
	Reason   string
	Argv     []string
	Env      map[string]string // from "(env: K=V)"; "<unset>" means unset
	Binary   string            // from "(binary: PATH)": the argv is not for the docker CLI
	Stdin    string            // from "(stdin: PATH)"
}

var (
	envNote    = regexp.MustCompile(`\(env: ([A-Z_]+)=([^)]*)\)`)
	binaryNote = regexp.MustCompile(`\(binary: ([^)]*)\)`)
	stdinNote  = regexp.MustCompile(`\(stdin: ([^)]*)\)`)
)

func readCorpus(t *testing.T) []corpusRow {
	t.Helper()
	path := filepath.Join(moduleRoot(t), "internal", "policy", "testdata", "docker-argv.tsv")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read corpus: %v", err)
	}
	rows, err := parseCorpus(string(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func parseCorpus(text string) ([]corpusRow, error) {
	var rows []corpusRow
	for i, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) < 3 {
			return nil, fmt.Errorf("line %d: %d columns, want at least 3", i+1, len(cols))
		}
		r := corpusRow{Line: i + 1, Expected: cols[0], Reason: cols[1], Env: map[string]string{}}
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
		rows = append(rows, r)
	}
	return rows, nil
}

// demoRewriter maps the corpus's /srv/demo fixtures and fake -H socket onto this run's.
type demoRewriter struct {
	demoDir string // replaces /srv/demo
	host    string // replaces unix:///srv/demo/fake.sock
}

func (d demoRewriter) rewrite(s string) string {
	s = strings.ReplaceAll(s, "unix:///srv/demo/fake.sock", d.host)
	return strings.ReplaceAll(s, "/srv/demo", d.demoDir)
}

func (d demoRewriter) argv(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = d.rewrite(a)
	}
	return out
}

func TestParseCorpus(t *testing.T) {
	rows, err := parseCorpus("# header\n" +
		"BLOCK\tx (env: DOCKER_HOST=<unset>) (binary: /srv/demo/bin/docker-compose)\t[\"docker\", \"exec\"]\tGET /x\n" +
		"ALLOW\tplain (stdin: /dev/null)\t[\"docker\", \"ps\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	if v, ok := rows[0].Env["DOCKER_HOST"]; !ok || v != "<unset>" {
		t.Errorf("env = %v", rows[0].Env)
	}
	if rows[0].Binary != "/srv/demo/bin/docker-compose" || rows[1].Stdin != "/dev/null" {
		t.Errorf("notes: %+v", rows)
	}
	rw := demoRewriter{demoDir: "/t/demo", host: "unix:///t/d.sock"}
	got := rw.argv([]string{"docker", "-Hunix:///srv/demo/fake.sock", "save", "-o", "/srv/demo/out/a.tar"})
	want := []string{"docker", "-Hunix:///t/d.sock", "save", "-o", "/t/demo/out/a.tar"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("rewrite = %q, want %q", got, want)
	}
	if _, err := parseCorpus("BLOCK\tx\tnot json\n"); err == nil {
		t.Error("bad argv JSON parsed without error")
	}
}

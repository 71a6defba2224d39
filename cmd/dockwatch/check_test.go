package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// runCLI runs the dockwatch CLI in-process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeConfig(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dockwatch.toml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckJSON(t *testing.T) {
	long := []string{"docker", "run"}
	for range 300 {
		long = append(long, "-e", "A=b")
	}
	long = append(long, "alpine")
	audit := writeConfig(t, "[policy]\nmode = \"audit\"\n")
	undecidedAllow := writeConfig(t, "[policy]\nundecided = \"allow\"\n")
	escapeOff := writeConfig(t, "[policy]\nescape = \"off\"\n")
	blockPrune := writeConfig(t, "[policy]\nblock = [\"system prune\"]\n")

	tests := []struct {
		name    string
		flags   []string
		argv    []string
		code    int
		verdict string
		rule    string
		command string
		binary  string
	}{
		{"exec", nil, []string{"docker", "exec", "ctr", "sh"}, 1, "block", "blocked-subcommand", "exec", "docker"},
		{"ps", nil, []string{"docker", "ps"}, 0, "allow", "", "ps", "docker"},
		{"any argv0 path", nil, []string{"/usr/local/bin/docker", "container", "exec", "-it", "c", "sh"}, 1, "block", "blocked-subcommand", "container exec", "docker"},
		{"run plain", nil, []string{"docker", "run", "--rm", "alpine", "true"}, 0, "allow", "", "run", "docker"},
		{"privileged", nil, []string{"docker", "run", "--privileged", "alpine"}, 1, "block", "escape-flags", "run", "docker"},
		{"host root bind", nil, []string{"docker", "run", "-v", "/:/host", "alpine"}, 1, "block", "escape-flags", "run", "docker"},
		{"help only", nil, []string{"docker", "exec", "--help"}, 0, "allow", "", "exec", "docker"},
		{"help after positional runs exec", nil, []string{"docker", "exec", "ctr", "--help"}, 1, "block", "blocked-subcommand", "exec", "docker"},
		{"unknown command", nil, []string{"docker", "debug", "ctr"}, 1, "block", "unknown", "", "docker"},
		{"compose plugin argv", nil, []string{"/usr/libexec/docker/cli-plugins/docker-compose", "compose", "exec", "svc", "sh"}, 1, "block", "blocked-subcommand", "compose exec", "compose"},
		{"compose ps via docker", nil, []string{"docker", "compose", "ps"}, 0, "allow", "", "compose ps", "docker"},
		{"buildx plugin argv", nil, []string{"docker-buildx", "buildx", "build", "."}, 0, "allow", "", "buildx build", "buildx"},
		{"build push", nil, []string{"docker", "buildx", "build", "--push", "."}, 1, "block", "blocked-subcommand", "buildx build", "docker"},
		{"--binary overrides argv0", []string{"--binary", "compose"}, []string{"whatever", "compose", "exec", "svc", "sh"}, 1, "block", "blocked-subcommand", "compose exec", "compose"},
		{"undecided", nil, long, 1, "undecided", "", "", "docker"},
		{"undecided allowed by config", []string{"--config", undecidedAllow}, long, 0, "undecided", "", "", "docker"},
		{"audit mode", []string{"--config", audit}, []string{"docker", "exec", "ctr", "sh"}, 0, "audit", "blocked-subcommand", "exec", "docker"},
		{"escape off", []string{"--config", escapeOff}, []string{"docker", "run", "--privileged", "alpine"}, 0, "allow", "", "run", "docker"},
		{"custom block list", []string{"--config", blockPrune}, []string{"docker", "system", "prune", "-f"}, 1, "block", "blocked-subcommand", "system prune", "docker"},
		{"custom block list allows exec", []string{"--config", blockPrune}, []string{"docker", "exec", "ctr", "sh"}, 0, "allow", "", "exec", "docker"},
		{"no dashdash", nil, []string{"docker", "exec", "ctr", "sh"}, 1, "block", "blocked-subcommand", "exec", "docker"},
		{"--output json", []string{"--output", "json"}, []string{"docker", "ps"}, 0, "allow", "", "ps", "docker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check"}, tt.flags...)
			if !slices.Contains(tt.flags, "--output") {
				args = append(args, "-o", "json")
			}
			if tt.name != "no dashdash" {
				args = append(args, "--")
			}
			args = append(args, tt.argv...)
			code, stdout, stderr := runCLI(t, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tt.code, stdout, stderr)
			}
			if stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
				t.Errorf("stdout is not one JSON line: %q", stdout)
			}
			var got struct {
				Verdict, Rule, Command, Reason, Binary string
			}
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("stdout %q: %v", stdout, err)
			}
			if got.Verdict != tt.verdict || got.Rule != tt.rule || got.Command != tt.command || got.Binary != tt.binary {
				t.Errorf("got verdict %q rule %q command %q binary %q, want %q %q %q %q",
					got.Verdict, got.Rule, got.Command, got.Binary, tt.verdict, tt.rule, tt.command, tt.binary)
			}
			if got.Reason == "" {
				t.Error("reason is empty")
			}
		})
	}
}

func TestCheckText(t *testing.T) {
	tests := []struct {
		argv []string
		code int
		want string
	}{
		{[]string{"docker", "exec", "ctr", "sh"}, 1,
			`block: "exec" is a blocked operation (rule blocked-subcommand, command "exec")` + "\n"},
		{[]string{"docker", "ps", "-a"}, 0, `allow: "ps" is allowed (command "ps")` + "\n"},
		{[]string{"docker-compose", "compose", "ps"}, 0, `allow: "compose ps" is allowed (command "compose ps", binary compose)` + "\n"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, append([]string{"check", "--"}, tt.argv...)...)
		if code != tt.code || stdout != tt.want || stderr != "" {
			t.Errorf("check %q: exit %d stdout %q stderr %q, want exit %d stdout %q", tt.argv, code, stdout, stderr, tt.code, tt.want)
		}
	}
}

func TestCheckUsageErrors(t *testing.T) {
	bad := writeConfig(t, "[policy]\n\nescape = \"maybe\"\n")
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no argv", []string{"check"}, "no command line given"},
		{"only dashdash", []string{"check", "--"}, "no command line given"},
		{"bad output", []string{"check", "-o", "yaml", "--", "docker", "ps"}, `-o must be text or json, got "yaml"`},
		{"bad binary", []string{"check", "--binary", "podman", "--", "docker", "ps"}, `--binary must be docker, compose or buildx, got "podman"`},
		{"unknown flag", []string{"check", "--verbose", "--", "docker", "ps"}, "flag provided but not defined: -verbose"},
		{"bad config", []string{"check", "--config", bad, "--", "docker", "ps"}, `dockwatch.toml:3: policy.escape: must be one of block, audit, off, got "maybe"`},
		{"missing config", []string{"check", "--config", filepath.Join(t.TempDir(), "nope.toml"), "--", "docker", "ps"}, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
		})
	}
	// Usage mistakes also print the usage.
	if _, _, stderr := runCLI(t, "check"); !strings.Contains(stderr, "Usage: dockwatch check") {
		t.Errorf("stderr of a usage error has no usage: %q", stderr)
	}
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string // substring
		stderr     string // substring
		noStdout   bool
		noStderror bool
	}{
		{args: nil, code: 2, stderr: "Usage: dockwatch COMMAND", noStdout: true},
		{args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`, noStdout: true},
		{args: []string{"--help"}, code: 0, stdout: "Usage: dockwatch COMMAND", noStderror: true},
		{args: []string{"help"}, code: 0, stdout: "  check ", noStderror: true},
		{args: []string{"help", "check"}, code: 0, stdout: "Usage: dockwatch check", noStderror: true},
		{args: []string{"help", "nope"}, code: 2, stderr: `unknown command "nope"`},
		{args: []string{"check", "--help"}, code: 0, stdout: "-config FILE", noStderror: true},
		{args: []string{"version"}, code: 0, stdout: "dockwatch ", noStderror: true},
		{args: []string{"--version"}, code: 0, stdout: "dockwatch ", noStderror: true},
		{args: []string{"version", "extra"}, code: 2, stderr: "Usage: dockwatch version"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) ||
			(tt.noStdout && stdout != "") || (tt.noStderror && stderr != "") {
			t.Errorf("dockwatch %q: exit %d stdout %q stderr %q; want exit %d, stdout with %q, stderr with %q",
				tt.args, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
}

// Every registered subcommand answers --help on stdout with exit 0, so `dockwatch help X` works.
func TestEverySubcommandHasHelp(t *testing.T) {
	for _, c := range commands {
		code, stdout, stderr := runCLI(t, c.name, "--help")
		if code != 0 || !strings.Contains(stdout+stderr, "dockwatch") {
			t.Errorf("dockwatch %s --help: exit %d stdout %q stderr %q; want exit 0 and a usage", c.name, code, stdout, stderr)
		}
	}
}

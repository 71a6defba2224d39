package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/dockwatch/dockwatch/internal/policy"
)

const checkUsage = `Usage: dockwatch check [-o json|text] [--config FILE] [--binary docker|compose|buildx] -- ARGV...

Classifies one command line offline, with the same classifier the kernel runs, and explains the
verdict. ARGV is the full argument vector including argv[0], for example:

  dockwatch check -- docker exec ctr sh
  dockwatch check -o json -- /usr/bin/docker run --privileged alpine

argv[0] may be any path; it only chooses the binary when --binary is not given:
docker-compose means compose, docker-buildx means buildx, anything else docker.

Exit status: 0 allow (also audit, and undecided when the config sets undecided = "allow"),
1 block (and undecided otherwise), 2 usage or config error.

Options:
`

func cmdCheck(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dockwatch check", flag.ContinueOnError)
	var output, configPath, binaryName string
	fs.StringVar(&output, "o", "text", "output format: text or json")
	fs.StringVar(&output, "output", "text", "same as -o")
	fs.StringVar(&configPath, "config", "", "config `FILE` (default: the built-in defaults)")
	fs.StringVar(&binaryName, "binary", "", "classify as this binary: docker, compose or buildx (default: from argv[0])")
	if code, done := parseFlags(fs, args, checkUsage, stdout, stderr); done {
		return code
	}
	argv := fs.Args()
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "dockwatch check: "+format+"\n\n", a...)
		printUsage(fs, checkUsage, stderr)
		return exitUsage
	}
	if output != "text" && output != "json" {
		return usageErr("-o must be text or json, got %q", output)
	}
	if len(argv) == 0 {
		return usageErr("no command line given (put it after --)")
	}
	bin := guessBinary(argv[0])
	if binaryName != "" {
		b, ok := policy.ParseBinary(binaryName)
		if !ok {
			return usageErr("--binary must be docker, compose or buildx, got %q", binaryName)
		}
		bin = b
	}

	cfg, err := loadConfig(configPath)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch check: %v\n", err)
		return exitUsage
	}
	tables, err := cfg.Compile()
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch check: %v\n", err)
		return exitUsage
	}

	d := tables.Decide(bin, argv)
	if output == "json" {
		b, err := json.Marshal(d)
		if err != nil {
			fmt.Fprintf(stderr, "dockwatch check: encode decision: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintln(stdout, decisionLine(d))
	}
	return checkExit(d.Verdict, cfg.Policy.Undecided)
}

// checkExit maps a verdict to the exit status: what the kernel would do with the command.
func checkExit(v policy.Verdict, undecided string) int {
	switch v {
	case policy.VerdictAllow, policy.VerdictAudit:
		return exitOK
	case policy.VerdictUndecided:
		if undecided == "allow" {
			return exitOK
		}
	}
	return exitBlock
}

// guessBinary picks the grammar from argv[0] the way the docker CLI names its plugins.
func guessBinary(argv0 string) policy.Binary {
	switch path.Base(argv0) {
	case "docker-compose":
		return policy.BinCompose
	case "docker-buildx":
		return policy.BinBuildx
	}
	return policy.BinDocker
}

// decisionLine renders a decision as one line: `block: "exec" is a blocked operation (rule
// blocked-subcommand, command "exec")`.
func decisionLine(d policy.Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", d.Verdict, d.Reason)
	var details []string
	if d.Rule != policy.RuleNone {
		details = append(details, "rule "+d.Rule.String())
	}
	if d.Command != "" {
		details = append(details, fmt.Sprintf("command %q", d.Command))
	}
	if d.Binary != policy.BinDocker {
		details = append(details, "binary "+d.Binary.String())
	}
	if len(details) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(details, ", "))
	}
	return b.String()
}

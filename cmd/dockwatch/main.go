// Command dockwatch keeps an untrusted local user away from the dangerous parts of the Docker
// API. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes shared by the subcommands.
const (
	exitOK    = 0
	exitBlock = 1 // dockwatch check: the command would be blocked
	exitUsage = 2 // bad usage or bad config
)

// commandFunc runs one subcommand. args are the arguments after the subcommand's name. It returns
// the process exit code.
type commandFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) int

type command struct {
	name    string
	summary string
	run     commandFunc
}

// commands is the dispatch table. A subcommand in its own file adds itself with one line:
//
//	func init() { register("run", "load the BPF programs and enforce the policy", cmdRun) }
//
// (help refers back to the table, so the table is filled at init time, not in its declaration.)
var commands []command

func init() {
	register("check", "classify a docker command line offline and explain the verdict", cmdCheck)
	register("version", "print the version", cmdVersion)
	register("help", "show help for dockwatch or one subcommand", cmdHelp)
}

// register adds a subcommand; it is meant for init functions of the subcommand files.
func register(name, summary string, run commandFunc) {
	if slices.ContainsFunc(commands, func(c command) bool { return c.name == name }) {
		panic("dockwatch: subcommand registered twice: " + name)
	}
	commands = append(commands, command{name, summary, run})
}

func lookup(name string) (command, bool) {
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return command{}, false
	}
	return commands[i], true
}

// run dispatches args (without the program name) to a subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		return cmdVersion(ctx, nil, stdout, stderr)
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "dockwatch: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: dockwatch COMMAND [ARGS...]\n\nCommands:\n")
	sorted := slices.Clone(commands)
	slices.SortFunc(sorted, func(a, b command) int { return strings.Compare(a.name, b.name) })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'dockwatch help COMMAND' for the options of one command.\n")
}

func cmdHelp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		usage(stdout)
		return exitOK
	case 1:
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			usage(stdout)
			return exitOK
		}
		c, ok := lookup(args[0])
		if !ok {
			fmt.Fprintf(stderr, "dockwatch help: unknown command %q\n\n", args[0])
			usage(stderr)
			return exitUsage
		}
		// Every subcommand prints its usage on stdout for --help and exits 0.
		return c.run(ctx, []string{"--help"}, stdout, stderr)
	}
	fmt.Fprintf(stderr, "Usage: dockwatch help [COMMAND]\n")
	return exitUsage
}

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = ""

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintf(stdout, "Usage: dockwatch version\n\nPrints the dockwatch version, its VCS revision and the Go version.\n")
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "Usage: dockwatch version\n")
		return exitUsage
	}
	fmt.Fprintln(stdout, versionString())
	return exitOK
}

func versionString() string {
	v, rev, modified, goVersion := version, "", false, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	out := "dockwatch " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " (" + rev
		if modified {
			out += ", modified"
		}
		out += ")"
	}
	if goVersion != "" {
		out += " " + goVersion
	}
	return out
}

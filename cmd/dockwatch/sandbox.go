package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/sandbox"
)

func init() {
	register("sandbox", "run a command under a seccomp profile (no_new_privs + filter)", cmdSandbox)
}

// Exit codes of `dockwatch sandbox` when CMD never starts, as in POSIX shells.
const (
	exitCannotExec = 126
	exitNotFound   = 127
)

const sandboxUsage = `Usage: dockwatch sandbox [--profile agent] [--print] -- CMD [ARGS...]

Sets no_new_privs, installs the seccomp profile's filter on itself and execs CMD (looked up in
PATH). The filter is inherited by everything CMD starts and cannot be removed.

  --profile NAME  profile to apply (agent) or print (agent, daemon); default agent
  --print         print the profile as JSON and exit

The agent profile allows everything except ptrace, process_vm_readv/writev, pidfd_getfd,
io_uring, bpf, perf_event_open, userfaultfd, kexec, kernel modules, keyrings, mounts, setns and
user-namespace creation (EPERM); clone3 fails with ENOSYS so libc falls back to clone.

no_new_privs makes exec ignore set-user-ID and set-group-ID bits: under the sandbox sudo does not
elevate and a setgid docker CLI does not get the docker group. Use it with access = "group".
`

func cmdSandbox(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	profileName := fs.String("profile", "agent", "")
	printOnly := fs.Bool("print", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, sandboxUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "dockwatch sandbox: %v\n\n%s", err, sandboxUsage)
		return exitUsage
	}
	profile, err := sandbox.Lookup(*profileName)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch sandbox: %v\n", err)
		return exitUsage
	}
	if *printOnly {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "dockwatch sandbox: --print takes no command\n")
			return exitUsage
		}
		out, err := json.MarshalIndent(profile, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "dockwatch sandbox: encode profile: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stdout, "%s\n", out)
		return exitOK
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintf(stderr, "dockwatch sandbox: missing command\n\n%s", sandboxUsage)
		return exitUsage
	}
	if profile.Name != "agent" {
		fmt.Fprintf(stderr, "dockwatch sandbox: profile %q can only be printed; it does not allow execve\n", profile.Name)
		return exitUsage
	}
	path, err := exec.LookPath(cmdArgs[0])
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch sandbox: %v\n", err)
		return exitNotFound
	}
	if err := sandbox.Apply(profile); err != nil {
		fmt.Fprintf(stderr, "dockwatch sandbox: %v\n", err)
		return exitCannotExec
	}
	err = unix.Exec(path, cmdArgs, os.Environ())
	fmt.Fprintf(stderr, "dockwatch sandbox: exec %s: %v\n", path, err)
	return exitCannotExec
}

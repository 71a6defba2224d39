package sandbox_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/sandbox"
)

// childEnv makes the test binary act as a child that applies a profile and reports; see TestMain.
const childEnv = "DOCKWATCH_SANDBOX_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// child runs in a re-executed test binary. It prints NAME=RESULT lines on stdout.
func child(mode string) int {
	switch mode {
	case "userns", "userns-control":
		if mode == "userns" {
			if err := sandbox.Apply(sandbox.Agent()); err != nil {
				fmt.Println("apply=" + err.Error())
				return 1
			}
		}
		report("fork", exec.Command("true").Run())
		cmd := exec.Command("true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
		report("fork_newuser", cmd.Run())
		return 0
	case "daemon":
		return childDaemon()
	case "daemon-kill":
		return childDaemonKill()
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 2
}

func report(name string, err error) {
	var errno syscall.Errno
	switch {
	case err == nil:
		fmt.Printf("%s=OK\n", name)
	case errors.As(err, &errno):
		fmt.Printf("%s=%s\n", name, unix.ErrnoName(errno))
	default:
		fmt.Printf("%s=%s\n", name, strings.ReplaceAll(err.Error(), "\n", " "))
	}
}

// runChild re-executes the test binary in the given child mode and returns its NAME=RESULT map.
func runChild(t *testing.T, mode string, env ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v\nstdout:\n%s\nstderr:\n%s", mode, err, out, stderr.String())
	}
	return parseResults(t, out)
}

func parseResults(t *testing.T, out []byte) map[string]string {
	t.Helper()
	res := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		res[name] = val
	}
	if len(res) == 0 {
		t.Fatalf("no results in output:\n%s", out)
	}
	return res
}

func TestProfilesAssemble(t *testing.T) {
	for _, name := range sandbox.Names() {
		p, err := sandbox.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		insts, err := p.Assemble()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		raw, err := bpf.Assemble(insts)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		if len(raw) < 10 || len(raw) > 4096 {
			t.Errorf("%s: %d instructions", name, len(raw))
		}
		// The architecture check comes first and kills on a foreign ABI.
		if ld, ok := insts[0].(bpf.LoadAbsolute); !ok || ld.Off != 4 {
			t.Errorf("%s: first instruction %v, want a load of seccomp_data.arch", name, insts[0])
		}
		if ret, ok := insts[2].(bpf.RetConstant); !ok || ret.Val != unix.SECCOMP_RET_KILL_PROCESS {
			t.Errorf("%s: foreign-arch action %v, want kill_process", name, insts[2])
		}
	}
	if _, err := sandbox.Lookup("nope"); !errors.Is(err, sandbox.ErrUnknownProfile) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Lookup(nope) = %v, want ErrUnknownProfile naming it", err)
	}
	bad := sandbox.Agent()
	bad.Rules = append([]sandbox.Rule{{Why: "typo", Action: bad.Default, Syscalls: []string{"ptrac"}}}, bad.Rules...)
	if _, err := bad.Assemble(); err == nil || !strings.Contains(err.Error(), `"ptrac"`) {
		t.Errorf("unknown syscall: err = %v, want one naming it", err)
	}
}

// The agent profile names every syscall the design lists.
func TestAgentProfileCoversDesign(t *testing.T) {
	want := []string{"ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup",
		"io_uring_enter", "io_uring_register", "bpf", "perf_event_open", "userfaultfd",
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "keyctl",
		"add_key", "request_key", "mount", "umount2", "pivot_root", "move_mount", "fsopen",
		"fsconfig", "fsmount", "fspick", "open_tree", "mount_setattr", "pidfd_getfd", "unshare",
		"clone", "clone3", "setns"}
	have := map[string]bool{}
	for _, s := range sandbox.Agent().Syscalls() {
		have[s] = true
	}
	for _, s := range want {
		if !have[s] {
			t.Errorf("agent profile does not mention %s", s)
		}
	}
}

func TestUserNamespaceCloneDeniedForkWorks(t *testing.T) {
	control := runChild(t, "userns-control")
	if control["fork"] != "OK" {
		t.Fatalf("control: plain fork+exec failed: %s", control["fork"])
	}
	if control["fork_newuser"] != "OK" {
		t.Logf("control: this host refuses user namespaces even without the filter (%s); the "+
			"EPERM below is still asserted", control["fork_newuser"])
	}
	got := runChild(t, "userns")
	if got["fork"] != "OK" {
		t.Errorf("under the agent profile a plain fork+exec failed: %s", got["fork"])
	}
	if got["fork_newuser"] != "EPERM" {
		t.Errorf("under the agent profile clone(CLONE_NEWUSER) = %s, want EPERM", got["fork_newuser"])
	}
}

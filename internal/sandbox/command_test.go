package sandbox_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dockwatch/dockwatch/internal/testutil/fakeapi"
)

var (
	buildOnce  sync.Once
	buildDir   string
	buildError error
)

// binaries builds cmd/dockwatch and the probe (static, no cgo) once per test binary.
func binaries(t *testing.T) (dockwatch, probe string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go toolchain on PATH to build dockwatch and the probe: %v", err)
	}
	buildOnce.Do(func() {
		buildDir, buildError = os.MkdirTemp("", "dockwatch-sandbox-test-")
		if buildError != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{
			{"dockwatch", "github.com/dockwatch/dockwatch/cmd/dockwatch"},
			{"probe", "./testdata/probe"},
		} {
			cmd := exec.Command(goBin, "build", "-o", filepath.Join(buildDir, b.out), b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildError = errors.New("go build " + b.pkg + ": " + err.Error() + "\n" + string(out))
				return
			}
		}
	})
	if buildError != nil {
		t.Fatal(buildError)
	}
	return filepath.Join(buildDir, "dockwatch"), filepath.Join(buildDir, "probe")
}

func runCmd(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSandboxDeniesSyscalls runs the probe with and without `dockwatch sandbox`.
func TestSandboxDeniesSyscalls(t *testing.T) {
	dockwatch, probe := binaries(t)
	controlOut, err := runCmd(t, nil, probe, "syscalls")
	if err != nil {
		t.Fatalf("probe without sandbox: %v\n%s", err, controlOut)
	}
	control := parseResults(t, []byte(controlOut))
	out, err := runCmd(t, nil, dockwatch, "sandbox", "--", probe, "syscalls")
	if err != nil {
		t.Fatalf("probe under sandbox: %v\n%s", err, out)
	}
	got := parseResults(t, []byte(out))
	for _, name := range []string{"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
		"io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open",
		"userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module",
		"delete_module", "keyctl", "add_key", "request_key", "mount", "umount2", "pivot_root",
		"move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "mount_setattr",
		"setns", "unshare_newuser", "clone_newuser"} {
		if got[name] != "EPERM" {
			t.Errorf("%s under the sandbox: %s, want EPERM", name, got[name])
		}
		if control[name] == "EPERM" {
			t.Logf("note: %s is EPERM on this host even without the sandbox", name)
		}
	}
	if got["clone3"] != "ENOSYS" || control["clone3"] == "ENOSYS" {
		t.Errorf("clone3: %s under the sandbox (want ENOSYS), %s without (want anything else)", got["clone3"], control["clone3"])
	}
	for _, name := range []string{"unshare_none", "getpid"} {
		if got[name] != "OK" {
			t.Errorf("%s under the sandbox: %s, want OK", name, got[name])
		}
	}
}

func TestSandboxForkAndUserNamespace(t *testing.T) {
	dockwatch, probe := binaries(t)
	out, err := runCmd(t, nil, dockwatch, "sandbox", "--", probe, "userns")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := parseResults(t, []byte(out))
	if got["fork"] != "OK" || got["fork_newuser"] != "EPERM" {
		t.Errorf("fork=%s (want OK), fork_newuser=%s (want EPERM)", got["fork"], got["fork_newuser"])
	}
}

// TestSandboxKillsForeignABI: a syscall through int 0x80 bypasses a default-allow filter that
// only knows x86_64 numbers; the profile kills the process instead.
func TestSandboxKillsForeignABI(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("int 0x80 exists only on x86; running on %s", runtime.GOARCH)
	}
	dockwatch, probe := binaries(t)
	control, err := runCmd(t, nil, probe, "int80")
	if err != nil || !strings.HasPrefix(control, "int80_getpid=") {
		t.Skipf("the kernel has no i386 syscall entry (ia32 emulation off): %v %s", err, control)
	}
	out, err := runCmd(t, nil, dockwatch, "sandbox", "--", probe, "int80")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGSYS {
		t.Fatalf("int 0x80 getpid under the sandbox: err=%v out=%q, want death by SIGSYS", err, out)
	}
}

// TestSandboxNormalWork: a shell, the Go toolchain and the docker CLI still work.
func TestSandboxNormalWork(t *testing.T) {
	dockwatch, _ := binaries(t)
	sandboxed := func(t *testing.T, env []string, args ...string) string {
		t.Helper()
		out, err := runCmd(t, env, dockwatch, append([]string{"sandbox", "--"}, args...)...)
		if err != nil {
			t.Fatalf("dockwatch sandbox -- %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	t.Run("sh", func(t *testing.T) {
		if out := sandboxed(t, nil, "sh", "-c", "echo ok; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"); !strings.Contains(out, "ok\n") ||
			!strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "NoNewPrivs:\t1") {
			t.Errorf("output %q, want ok and a filtered, no_new_privs shell", out)
		}
	})
	t.Run("go build", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		env := []string{"GOFLAGS=", "GOTOOLCHAIN=local", "GOWORK=off"}
		sandboxed(t, env, "go", "version")
		bin := filepath.Join(dir, "hello")
		sandboxed(t, env, "sh", "-c", "cd "+dir+" && go build -o "+bin+" .")
		if out := sandboxed(t, nil, bin); !strings.Contains(out, "hello") {
			t.Errorf("hello printed %q", out)
		}
	})
	t.Run("docker", func(t *testing.T) {
		if _, err := exec.LookPath("docker"); err != nil {
			t.Skipf("no docker CLI on PATH: %v", err)
		}
		dir := t.TempDir()
		env := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "config"), "DOCKER_CONTEXT=",
			"DOCKER_HOST=unix://" + filepath.Join(dir, "docker.sock")}
		if out := sandboxed(t, env, "docker", "--version"); !strings.Contains(out, "Docker version") {
			t.Errorf("docker --version printed %q", out)
		}
		api, err := fakeapi.Start(filepath.Join(dir, "docker.sock"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = api.Close() })
		sandboxed(t, env, "docker", "ps")
		var sawList bool
		for _, r := range api.Requests() {
			sawList = sawList || (r.Method == "GET" && r.Path == "/containers/json")
		}
		if !sawList {
			t.Errorf("docker ps under the sandbox did not reach GET /containers/json; requests: %v", api.Requests())
		}
	})
}

func TestSandboxUsage(t *testing.T) {
	dockwatch, _ := binaries(t)
	out, err := runCmd(t, nil, dockwatch, "sandbox", "--print")
	if err != nil || !strings.Contains(out, `"name": "agent"`) || !strings.Contains(out, `"clone3"`) {
		t.Errorf("--print: %v\n%s", err, out)
	}
	out, err = runCmd(t, nil, dockwatch, "sandbox", "--profile", "daemon", "--print")
	if err != nil || !strings.Contains(out, `"default_action": "errno EPERM"`) {
		t.Errorf("--profile daemon --print: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sandbox"}, 2, "missing command"},
		{[]string{"sandbox", "--profile", "nope", "--", "true"}, 2, `unknown sandbox profile "nope"`},
		{[]string{"sandbox", "--profile", "daemon", "--", "true"}, 2, "can only be printed"},
		{[]string{"sandbox", "--", "dockwatch-no-such-command"}, 127, "dockwatch-no-such-command"},
	} {
		out, err := runCmd(t, nil, dockwatch, c.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%v: err=%v out=%q, want exit %d and %q", c.args, err, out, c.code, c.want)
		}
	}
}

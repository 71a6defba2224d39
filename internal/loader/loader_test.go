package loader

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
)

const testUID = 64123 // throwaway uid; no user entry needed

// requireEnforcement skips unless this is root on a kernel that can run the fallback programs.
func requireEnforcement(t *testing.T) Features {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to load BPF (euid %d)", os.Geteuid())
	}
	f := ProbeFeatures()
	if _, err := MakePlan(f, "group"); err != nil {
		t.Skipf("kernel cannot run the fallback programs: %v (%s)", err, strings.Join(f.Notes, "; "))
	}
	return f
}

// testEnv is a protected socket and a trusted client in a temp dir.
type testEnv struct {
	dir    string
	sock   string
	client string
	ln     *net.UnixListener
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	// sun_path is 108 bytes: keep it short, and reachable for the test uid.
	dir, err := os.MkdirTemp("", "dwl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{dir: dir, sock: filepath.Join(dir, "d.sock"), client: filepath.Join(dir, "docker")}
	env.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: env.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.ln.Close() })
	if err := os.Chmod(env.sock, 0o777); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := env.ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	copyFile(t, "/bin/true", env.client)
	return env
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func (env *testEnv) options() Options {
	return Options{
		UIDs:           []uint32{testUID},
		FollowChildren: true,
		Access:         "group",
		Clients:        []string{env.client},
		Plugins:        []string{"compose", "buildx"},
		Sockets:        []string{env.sock},
	}
}

func loadOrFail(t *testing.T, opts Options) *Enforcer {
	t.Helper()
	e, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// linkedPrograms lists the ids of programs the kernel reports as loaded.
func loadedPrograms(t *testing.T) map[ebpf.ProgramID]string {
	t.Helper()
	out := map[ebpf.ProgramID]string{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return out
		}
		if err != nil {
			t.Fatalf("list programs: %v", err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil {
			out[id] = info.Name
		}
		p.Close()
	}
}

func TestLoadAttachDetach(t *testing.T) {
	requireEnforcement(t)
	env := newTestEnv(t)
	before := loadedPrograms(t)

	e := loadOrFail(t, env.options())
	got := e.Attached()
	if len(got) != len(e.Plan.Programs) {
		t.Fatalf("attached %v, plan %v", got, e.Plan.Programs)
	}
	if !strings.Contains(got[0], "sched_process_fork") || !strings.Contains(got[1], "sched_process_exec") {
		t.Errorf("marking and exec verdict must attach first, got %v", got)
	}
	t.Logf("attached: %v", got)
	during := loadedPrograms(t)
	var ours int
	for id, name := range during {
		if _, ok := before[id]; !ok && strings.HasPrefix(name, "dw_") {
			ours++
		}
	}
	if ours != len(e.Plan.Programs) {
		t.Errorf("%d dw_ programs loaded, want %d", ours, len(e.Plan.Programs))
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Program release is deferred to an RCU grace period; give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for id, name := range loadedPrograms(t) {
			if _, ok := before[id]; !ok && strings.HasPrefix(name, "dw_") {
				left = append(left, name)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("programs still loaded after Close: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestEventLayout(t *testing.T) {
	// internal/events decodes struct event by offsets; keep the sizes in step.
	if got := unsafe.Sizeof(dockwatchEvent{}); got != 200 {
		t.Fatalf("struct event is %d bytes, internal/events expects 200", got)
	}
}

// runAs runs path with argv as the test uid and returns how it ended.
func runAs(t *testing.T, path string, argv []string, env ...string) (*os.ProcessState, string) {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Args = argv
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testUID, Gid: testUID}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %v: %v", argv, err)
	}
	return cmd.ProcessState, string(out)
}

func killedBySIGKILL(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// skipUnlessBPF skips t when this kernel refuses to load even a trivial tracepoint program
// (not root, BPF disabled, or a lockdown that forbids it).
func skipUnlessBPF(t *testing.T) {
	t.Helper()
	// r0 = 0; exit
	insns := [2]uint64{0xb7, 0x95}
	license := []byte("GPL\x00")
	attr := struct {
		progType    uint32
		insnCnt     uint32
		insns       uint64
		license     uint64
		logLevel    uint32
		logSize     uint32
		logBuf      uint64
		kernVersion uint32
		progFlags   uint32
	}{
		progType: 5, // BPF_PROG_TYPE_TRACEPOINT
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	const bpfProgLoad = 5
	fd, _, errno := unix.Syscall(unix.SYS_BPF, bpfProgLoad, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		t.Skipf("this kernel does not load BPF tracepoint programs: %v", errno)
	}
	unix.Close(int(fd))
}

// moduleRoot returns the directory of go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("not inside the dockwatch module")
	}
	return filepath.Dir(gomod)
}

// goBuild builds pkg (a path relative to the module root) into out as a static binary.
func goBuild(t *testing.T, pkg, out string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./"+pkg)
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// Event is the part of dockwatch's event schema v1 the test reads.
type Event struct {
	V       int       `json:"v"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Verdict string    `json:"verdict"`
	Action  string    `json:"action"`
	Rule    string    `json:"rule"`
	Command string    `json:"command"`
	Reason  string    `json:"reason"`
	Argv    []string  `json:"argv"`
	PID     int       `json:"pid"`
	UID     int       `json:"uid"`
	User    string    `json:"user"`
	Exe     string    `json:"exe"`
}

// watchdog is a running `dockwatch run`.
type watchdog struct {
	bin    string
	cfg    string
	pinDir string // private to this daemon: pins are adopted by whoever uses the same dir
	cmd    *exec.Cmd
	done   chan struct{}
	stderr bytes.Buffer // guarded by mu
	mu     sync.Mutex
	events []Event
	bad    []string // stdout lines that are not events
	progs  []bpfProg
	once   sync.Once
}

// startDockwatch starts `bin run --config cfg --ready-file ...`, waits for the ready file and
// stops the daemon when t ends.
func startDockwatch(t *testing.T, bin, cfg, dir string) *watchdog {
	t.Helper()
	ready := filepath.Join(dir, "ready")
	before, err := listProgs()
	if err != nil {
		t.Logf("bpftool: %v (program clean-up will not be checked)", err)
	}
	w := &watchdog{bin: bin, cfg: cfg, pinDir: newPinDir(t), done: make(chan struct{})}
	w.cmd = exec.Command(bin, "run", "--config", cfg, "--ready-file", ready, "--pin-dir", w.pinDir)
	w.cmd.Stderr = &lockedWriter{mu: &w.mu, w: &w.stderr}
	// Should the test binary die before its cleanups, the daemon goes too.
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start dockwatch: %v", err)
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			var e Event
			err := json.Unmarshal(sc.Bytes(), &e)
			w.mu.Lock()
			if err != nil {
				w.bad = append(w.bad, sc.Text())
			} else {
				w.events = append(w.events, e)
			}
			w.mu.Unlock()
		}
	}()
	go func() { <-readerDone; _ = w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Errorf("stop dockwatch: %v", err)
		}
		// The pins outlive the daemon by design; the test must not leave enforcement behind.
		if err := w.unload(); err != nil {
			t.Errorf("%v", err)
		}
		if left, err := leftoverProgs(w.progs); err == nil && len(left) > 0 && !w.unloaded(left) {
			t.Errorf("BPF programs %v survived dockwatch unload", left)
		}
		if t.Failed() {
			t.Logf("dockwatch stderr:\n%s", w.stderrText())
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-w.done:
			t.Fatalf("dockwatch exited before it was ready (%v); its stderr follows", w.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockwatch not ready after 60s; its stderr follows")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if before != nil {
		w.progs, err = ownedProgs(before, w.cmd.Process.Pid)
		if err != nil {
			t.Logf("bpftool: %v (program clean-up will not be checked)", err)
		}
		t.Logf("dockwatch (pid %d) loaded %d programs: %v", w.cmd.Process.Pid, len(w.progs), w.progs)
	}
	return w
}

// pinPrefix starts the name of each daemon's pin dir under bpffsRoot; the test's pid follows.
const (
	bpffsRoot = "/sys/fs/bpf"
	pinPrefix = "dwe2e"
)

// newPinDir names a pin dir for one daemon, after unloading those of test processes that no
// longer run.
func newPinDir(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(bpffsRoot, pinPrefix+"*"))
	for _, dir := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), pinPrefix), "x")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove stale pin dir %s: %v", dir, err)
		}
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(bpffsRoot, fmt.Sprintf("%s%dx%s", pinPrefix, os.Getpid(), hex.EncodeToString(b[:])))
}

// unload runs `dockwatch unload` on the daemon's pin dir and removes the dir.
func (w *watchdog) unload() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, w.bin, "unload", "--pin-dir", w.pinDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dockwatch unload --pin-dir %s: %w\n%s", w.pinDir, err, out)
	}
	if err := os.RemoveAll(w.pinDir); err != nil {
		return fmt.Errorf("remove pin dir: %w", err)
	}
	return nil
}

// unloaded waits up to 10s for progs to leave the kernel (tracing programs are freed after an
// RCU grace period) and reports whether they did.
func (w *watchdog) unloaded(progs []bpfProg) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, err := leftoverProgs(progs)
		if err == nil && len(left) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the daemon: SIGTERM, then SIGKILL after 20s. It is safe to call twice.
func (w *watchdog) stop() error {
	var err error
	w.once.Do(func() {
		select {
		case <-w.done:
			return
		default:
		}
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(20 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.done
			err = errors.New("dockwatch ignored SIGTERM for 20s; killed it")
		}
	})
	return err
}

// stderrText returns the daemon's stderr, at most its last 100 lines.
func (w *watchdog) stderrText() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := strings.SplitAfter(w.stderr.String(), "\n")
	if len(lines) > 100 {
		lines = append([]string{fmt.Sprintf("[%d lines omitted]\n", len(lines)-100)}, lines[len(lines)-100:]...)
	}
	return strings.Join(lines, "")
}

// Events returns a copy of the events printed so far.
func (w *watchdog) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Event(nil), w.events...)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// bpfProg is one entry of `bpftool prog show -j`.
type bpfProg struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
	Pids []struct {
		Pid  int    `json:"pid"`
		Comm string `json:"comm"`
	} `json:"pids"`
}

func (p bpfProg) String() string { return fmt.Sprintf("%d:%s(%s)", p.ID, p.Name, p.Type) }

func listProgs() ([]bpfProg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bpftool", "prog", "show", "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var progs []bpfProg
	if err := json.Unmarshal(out, &progs); err != nil {
		return nil, fmt.Errorf("decode bpftool output: %w", err)
	}
	return progs, nil
}

// ownedProgs returns the programs that pid holds. When bpftool cannot name the holders, it
// falls back to the programs named dw_* that are new since before.
func ownedProgs(before []bpfProg, pid int) ([]bpfProg, error) {
	now, err := listProgs()
	if err != nil {
		return nil, err
	}
	old := map[int]bool{}
	for _, p := range before {
		old[p.ID] = true
	}
	var byPid, byName []bpfProg
	for _, p := range now {
		for _, holder := range p.Pids {
			if holder.Pid == pid {
				byPid = append(byPid, p)
				break
			}
		}
		if !old[p.ID] && strings.HasPrefix(p.Name, "dw_") {
			byName = append(byName, p)
		}
	}
	if len(byPid) > 0 {
		return byPid, nil
	}
	return byName, nil
}

// leftoverProgs returns which of progs are still loaded.
func leftoverProgs(progs []bpfProg) ([]bpfProg, error) {
	now, err := listProgs()
	if err != nil {
		return nil, err
	}
	loaded := map[int]bool{}
	for _, p := range now {
		loaded[p.ID] = true
	}
	var left []bpfProg
	for _, p := range progs {
		if loaded[p.ID] {
			left = append(left, p)
		}
	}
	return left, nil
}

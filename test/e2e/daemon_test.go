package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/testutil/daemon"
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

// watchdog is a running `dockwatch run` and the BPF programs it loaded.
type watchdog struct {
	*daemon.Daemon
	bin    string
	pinDir string // private to this daemon: pins are adopted by whoever uses the same dir
	progs  []daemon.Prog
}

// startDockwatch starts `bin run --config cfg` with a pin dir of its own, waits for the ready
// file, and when t ends stops the daemon, unloads its pins and checks that its programs are
// gone.
func startDockwatch(t *testing.T, bin, cfg, dir string) *watchdog {
	t.Helper()
	before, err := daemon.Progs()
	if err != nil {
		t.Logf("bpftool: %v (program clean-up will not be checked)", err)
	}
	w := &watchdog{bin: bin}
	// Registered first, so it runs last: after the daemon stopped and its pins were unloaded.
	t.Cleanup(func() {
		if left, err := leftoverProgs(w.progs); err == nil && len(left) > 0 && !unloaded(w.progs) {
			t.Errorf("BPF programs %v survived dockwatch unload", left)
		}
	})
	w.pinDir = daemon.PinDir(t, bin)
	w.Daemon = daemon.StartTest(t, daemon.Options{Bin: bin, Config: cfg, ReadyFile: filepath.Join(dir, "ready"), PinDir: w.pinDir})
	if before != nil {
		w.progs, err = ownedProgs(before, w.Pid())
		if err != nil {
			t.Logf("bpftool: %v (program clean-up will not be checked)", err)
		}
		t.Logf("dockwatch (pid %d) loaded %d programs: %v", w.Pid(), len(w.progs), w.progs)
	}
	return w
}

// unload runs `dockwatch unload` on the daemon's pin dir.
func (w *watchdog) unload() error { return daemon.Unload(w.bin, w.pinDir) }

// unloaded waits up to 10s for progs to leave the kernel (tracing programs are freed after an
// RCU grace period) and reports whether they did.
func unloaded(progs []daemon.Prog) bool {
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

// ownedProgs returns the programs that pid holds. When bpftool cannot name the holders, it
// falls back to the programs named dw_* that are new since before.
func ownedProgs(before []daemon.Prog, pid int) ([]daemon.Prog, error) {
	now, err := daemon.Progs()
	if err != nil {
		return nil, err
	}
	old := map[uint32]bool{}
	for _, p := range before {
		old[p.ID] = true
	}
	var byPid, byName []daemon.Prog
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
func leftoverProgs(progs []daemon.Prog) ([]daemon.Prog, error) {
	now, err := daemon.Progs()
	if err != nil {
		return nil, err
	}
	loaded := map[uint32]bool{}
	for _, p := range now {
		loaded[p.ID] = true
	}
	var left []daemon.Prog
	for _, p := range progs {
		if loaded[p.ID] {
			left = append(left, p)
		}
	}
	return left, nil
}

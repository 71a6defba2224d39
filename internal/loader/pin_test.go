package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// testPinDir is a fresh pin dir on bpffs, removed (and its links detached) when t ends.
func testPinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(DefaultPinDir+"-test", fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), os.Getpid()))
	if err := ensureBPFFS(dir); err != nil {
		t.Skipf("no bpffs for pins: %v", err)
	}
	t.Cleanup(func() {
		if err := Unload(dir); err != nil && !errors.Is(err, ErrNotPinned) {
			t.Errorf("Unload: %v", err)
		}
		os.Remove(filepath.Dir(dir))
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir %s still there after Unload", dir)
		}
	})
	return dir
}

// ourPrograms counts the dw_ programs loaded now that were not loaded before.
func ourPrograms(t *testing.T, before map[ebpf.ProgramID]string) []string {
	t.Helper()
	var out []string
	for id, name := range loadedPrograms(t) {
		if _, ok := before[id]; !ok && strings.HasPrefix(name, "dw_") {
			out = append(out, fmt.Sprintf("%d:%s", id, name))
		}
	}
	slices.Sort(out)
	return out
}

func waitPrograms(t *testing.T, before map[ebpf.ProgramID]string, want int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := ourPrograms(t, before)
		if len(got) == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPinAdoptReplaceUnload(t *testing.T) {
	requireEnforcement(t)
	env := newTestEnv(t)
	dir := testPinDir(t)
	before := loadedPrograms(t)
	helperBin := env.helperCopy(t, "curl")
	denied := func(when string) {
		t.Helper()
		if r := run(t, testUID, helperBin, []string{"curl"}, "connect:"+env.sock); strings.TrimSpace(r.out) == "ok" {
			t.Errorf("%s: untrusted connect by the supervised uid succeeded", when)
		}
	}

	opts := env.options()
	opts.PinDir = dir
	e1, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p := e1.Pins(); p == nil || p.Adopted {
		t.Fatalf("first Load: pins %+v, want fresh", p)
	}
	n := len(e1.Plan.Programs)
	for _, name := range e1.Plan.Programs {
		if _, err := os.Stat(filepath.Join(dir, pinLinksDir, name)); err != nil {
			t.Errorf("link of %s not pinned: %v", name, err)
		}
	}
	first := ourPrograms(t, before)
	attached := e1.Attached()
	if err := e1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Closing the daemon's handles leaves the pinned enforcement in place.
	time.Sleep(200 * time.Millisecond)
	if got := ourPrograms(t, before); !slices.Equal(got, first) || len(got) != n {
		t.Fatalf("after Close: programs %v, want %v", got, first)
	}
	denied("daemon down")

	// Same object and settings: the links are adopted, no program changes.
	e2, err := Load(opts)
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if p := e2.Pins(); !p.Adopted {
		t.Errorf("second Load: pins %+v, want adopted", p)
	}
	if got := ourPrograms(t, before); !slices.Equal(got, first) {
		t.Errorf("adopting changed the programs: %v, want %v", got, first)
	}
	if !slices.Equal(e2.Attached(), attached) {
		t.Errorf("adopted attachments %v, want %v", e2.Attached(), attached)
	}
	if _, err := e2.Counters(); err != nil {
		t.Errorf("counters of adopted maps: %v", err)
	}
	e2.Close()

	// Different load-time settings: new programs replace the old ones.
	opts.UndecidedAllow = true
	e3, err := Load(opts)
	if err != nil {
		t.Fatalf("third Load: %v", err)
	}
	p := e3.Pins()
	if p.Adopted || len(p.Replaced)+len(p.Updated) != n || len(p.FreshMap) != 0 {
		t.Errorf("third Load: pins %+v, want every program replaced and every map reused", p)
	}
	t.Logf("replace: %+v", p)
	denied("after replacing")
	e3.Close()
	got := waitPrograms(t, before, n)
	if len(got) != n || slices.Equal(got, first) {
		t.Errorf("after replacing: programs %v (before %v), want %d new ones", got, first, n)
	}
	denied("after replacing, daemon down")

	if err := Unload(dir); err != nil {
		t.Fatalf("Unload: %v", err)
	}
	if got := waitPrograms(t, before, 0); len(got) != 0 {
		t.Errorf("programs left after Unload: %v", got)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err == nil {
		t.Errorf("pin dir left after Unload")
	}
	if err := Unload(dir); !errors.Is(err, ErrNotPinned) {
		t.Errorf("second Unload: %v, want ErrNotPinned", err)
	}
}

func TestLockPinDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root for bpffs (euid %d)", os.Geteuid())
	}
	dir := testPinDir(t)
	release, err := LockPinDir(dir)
	if err != nil {
		t.Fatalf("LockPinDir: %v", err)
	}
	if _, err := LockPinDir(dir); !errors.Is(err, ErrPinDirBusy) {
		t.Errorf("second LockPinDir: %v, want ErrPinDirBusy", err)
	}
	release()
	again, err := LockPinDir(dir)
	if err != nil {
		t.Fatalf("LockPinDir after release: %v", err)
	}
	again()
}

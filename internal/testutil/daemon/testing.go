package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// StartTest starts the daemon for tb, or fails tb. When tb ends the daemon is stopped (an
// unclean stop fails tb) and, if tb failed, the end of its stderr is logged.
func StartTest(tb testing.TB, o Options) *Daemon {
	tb.Helper()
	d, err := Start(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := d.Stop(); err != nil {
			tb.Errorf("stop dockwatch: %v", err)
		}
		if tb.Failed() {
			tb.Logf("dockwatch (pid %d) stderr:\n%s", d.Pid(), d.StderrTail(100))
		}
	})
	return d
}

// BPFFS is where the test daemons pin their programs.
const BPFFS = "/sys/fs/bpf"

// pinPrefix starts the name of every test pin dir; the test process's pid follows.
const pinPrefix = "dwtest"

// PinDir names a pin dir of its own for the daemons of tb: pins are adopted by whoever uses
// the same dir, so tests never share one. When tb ends, `bin unload` must remove the pins and
// the dir: enforcement must not outlive the test. The dirs of test processes that died before
// their clean-up are removed first.
func PinDir(tb testing.TB, bin string) string {
	tb.Helper()
	removeStalePinDirs(tb)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Join(BPFFS, fmt.Sprintf("%s%dx%s", pinPrefix, os.Getpid(), hex.EncodeToString(b[:])))
	tb.Cleanup(func() {
		if err := Unload(bin, dir); err != nil {
			tb.Error(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			tb.Errorf("pin dir %s still there after dockwatch unload (%v)", dir, err)
			if err := os.RemoveAll(dir); err != nil {
				tb.Logf("remove pin dir: %v", err)
			}
		}
	})
	return dir
}

func removeStalePinDirs(tb testing.TB) {
	dirs, _ := filepath.Glob(filepath.Join(BPFFS, pinPrefix+"*"))
	for _, dir := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), pinPrefix), "x")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			tb.Logf("remove stale pin dir %s: %v", dir, err)
		}
	}
}

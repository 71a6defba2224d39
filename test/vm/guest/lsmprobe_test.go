// Package guest holds tests that only mean something inside the VM matrix (test/vm). On any
// other machine they skip, saying so.
package guest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// expectBPFLSM reads DWVM_EXPECT_BPF_LSM, which the matrix passes as dwvm.expect_bpf_lsm on the
// kernel command line of every configuration.
func expectBPFLSM(t *testing.T) bool {
	t.Helper()
	switch v := os.Getenv("DWVM_EXPECT_BPF_LSM"); v {
	case "1":
		return true
	case "0":
		return false
	case "":
		t.Skipf("not inside the VM matrix (DWVM_EXPECT_BPF_LSM is unset); run go test ./test/vm")
	default:
		t.Fatalf("DWVM_EXPECT_BPF_LSM=%q: want 0 or 1", v)
	}
	return false
}

// TestActiveLSMs checks the kernel's list of active LSMs against the configuration.
func TestActiveLSMs(t *testing.T) {
	want := expectBPFLSM(t)
	data, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		t.Fatalf("read active LSMs (the init mounts securityfs): %v", err)
	}
	lsms := strings.Split(strings.TrimSpace(string(data)), ",")
	t.Logf("active LSMs: %s", strings.Join(lsms, ","))
	has := false
	for _, l := range lsms {
		has = has || l == "bpf"
	}
	if has != want {
		t.Fatalf("bpf in the active LSMs = %v, want %v", has, want)
	}
}

// denyConnectProgram is lsm/unix_stream_connect: it returns -EPERM for the thread group tgid
// and 0 for everyone else. It is the smallest program that shows an LSM hook really enforces,
// on the hook dockwatch's connect gate uses.
func denyConnectProgram(tgid int) *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:       "probe_connect",
		Type:       ebpf.LSM,
		AttachType: ebpf.AttachLSMMac,
		AttachTo:   "unix_stream_connect",
		License:    "GPL", // the verifier accepts only GPL-compatible LSM programs
		Instructions: asm.Instructions{
			asm.FnGetCurrentPidTgid.Call(),
			asm.RSh.Imm(asm.R0, 32), // the upper half is the tgid
			asm.JNE.Imm(asm.R0, int32(tgid), "allow"),
			asm.Mov.Imm(asm.R0, -int32(syscall.EPERM)),
			asm.Return(),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("allow"),
			asm.Return(),
		},
	}
}

// TestLSMProgramEnforces loads and attaches an LSM program and connects to a unix socket.
// With the BPF LSM active the connect must fail with EPERM. Without it the program may load
// and even attach (its trampoline sits on a hook the kernel never calls), but the connect must
// succeed: that is why dockwatch selects lsm mode by /sys/kernel/security/lsm and a real
// enforcement check, never by a successful load alone.
func TestLSMProgramEnforces(t *testing.T) {
	want := expectBPFLSM(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock limit: %v", err)
	}

	dir := t.TempDir()
	sock := filepath.Join(dir, "probe.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	prog, loadErr := ebpf.NewProgram(denyConnectProgram(os.Getpid()))
	if loadErr != nil {
		var verr *ebpf.VerifierError
		if errors.As(loadErr, &verr) {
			t.Logf("verifier: %+v", verr)
		}
		if want {
			t.Fatalf("load lsm/unix_stream_connect with the BPF LSM active: %v", loadErr)
		}
		t.Logf("probe: load failed without the BPF LSM: %v", loadErr)
		checkConnect(t, sock, false)
		return
	}
	t.Cleanup(func() { prog.Close() })
	t.Logf("probe: program loaded")

	l, attachErr := link.AttachLSM(link.LSMOptions{Program: prog})
	if attachErr != nil {
		if want {
			t.Fatalf("attach lsm/unix_stream_connect with the BPF LSM active: %v", attachErr)
		}
		t.Logf("probe: attach failed without the BPF LSM: %v", attachErr)
		checkConnect(t, sock, false)
		return
	}
	t.Cleanup(func() { l.Close() })
	t.Logf("probe: program attached")

	checkConnect(t, sock, want)
	if want {
		// Detaching must restore access: the link, not the process, holds the program.
		if err := l.Close(); err != nil {
			t.Fatalf("detach: %v", err)
		}
		checkConnect(t, sock, false)
	}
}

// checkConnect connects to sock and wants EPERM when denied, success otherwise.
func checkConnect(t *testing.T, sock string, denied bool) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err == nil {
		c.Close()
	}
	switch {
	case denied && errors.Is(err, syscall.EPERM):
		t.Logf("probe: connect denied with EPERM: the BPF LSM enforces")
	case denied:
		t.Fatalf("connect with lsm/unix_stream_connect attached: %v, want EPERM", err)
	case err != nil:
		t.Fatalf("connect: %v, want success (no enforcing program)", err)
	default:
		t.Logf("probe: connect succeeded: nothing enforces")
	}
}

// TestLSMReturnRange shows what vm/README.md says about LSM return values: a program that
// returns 1 from an int hook loads on 6.1 and is refused from 6.10 on (only 0 or -errno).
func TestLSMReturnRange(t *testing.T) {
	expectBPFLSM(t)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", release, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "probe_ret1", Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "unix_stream_connect",
		License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err == nil {
		prog.Close()
	}
	strict := major > 6 || (major == 6 && minor >= 10)
	switch {
	case strict && err == nil:
		t.Errorf("kernel %s loads an LSM program returning 1; vm/README.md says 6.10+ refuses it", release)
	case !strict && err != nil:
		t.Errorf("kernel %s refuses an LSM program returning 1: %v", release, err)
	case err != nil:
		t.Logf("probe: kernel %s refuses an LSM program returning 1: %v", release, err)
	default:
		t.Logf("probe: kernel %s loads an LSM program returning 1", release)
	}
}

package sandbox_test

import (
	"encoding/binary"
	"runtime"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/sandbox"
)

const (
	auditArchX8664 = 0xc000003e
	auditArchI386  = 0x40000003
)

// seccompData builds a struct seccomp_data for x/net/bpf's VM. The VM loads words big-endian,
// while the filter reads the low half of a 64-bit argument at offset 16+8*i on little-endian
// hosts, so each half is stored big-endian at the offset the filter reads it from.
func seccompData(nr uint32, auditArch uint32, arg0 uint64) []byte {
	d := make([]byte, 64)
	binary.BigEndian.PutUint32(d[0:], nr)
	binary.BigEndian.PutUint32(d[4:], auditArch)
	binary.BigEndian.PutUint32(d[16:], uint32(arg0))
	binary.BigEndian.PutUint32(d[20:], uint32(arg0>>32))
	return d
}

// TestFilterDecisions runs the assembled filters in a BPF interpreter, including paths the kernel
// tests cannot take safely (a real clone that would succeed, a foreign ABI in the daemon).
func TestFilterDecisions(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("decision table is written with x86_64 syscall numbers; running on %s", runtime.GOARCH)
	}
	const (
		allow  = unix.SECCOMP_RET_ALLOW
		eperm  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
		kill   = unix.SECCOMP_RET_KILL_PROCESS
	)
	threadFlags := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID |
		unix.CLONE_CHILD_CLEARTID)
	cases := []struct {
		profile sandbox.Profile
		name    string
		nr      uint32
		arch    uint32
		arg0    uint64
		want    uint32
	}{
		{sandbox.Agent(), "getpid", unix.SYS_GETPID, auditArchX8664, 0, allow},
		{sandbox.Agent(), "execve", unix.SYS_EXECVE, auditArchX8664, 0, allow},
		{sandbox.Agent(), "ptrace", unix.SYS_PTRACE, auditArchX8664, 0, eperm},
		{sandbox.Agent(), "io_uring_setup", unix.SYS_IO_URING_SETUP, auditArchX8664, 0, eperm},
		{sandbox.Agent(), "setns", unix.SYS_SETNS, auditArchX8664, 0, eperm},
		{sandbox.Agent(), "thread clone", unix.SYS_CLONE, auditArchX8664, threadFlags, allow},
		{sandbox.Agent(), "clone flags equal to clone3's number", unix.SYS_CLONE, auditArchX8664, unix.SYS_CLONE3, allow},
		{sandbox.Agent(), "clone NEWUSER", unix.SYS_CLONE, auditArchX8664, unix.CLONE_NEWUSER | uint64(unix.SIGCHLD), eperm},
		{sandbox.Agent(), "unshare NEWNS", unix.SYS_UNSHARE, auditArchX8664, unix.CLONE_NEWNS, allow},
		{sandbox.Agent(), "unshare NEWUSER|NEWNS", unix.SYS_UNSHARE, auditArchX8664, unix.CLONE_NEWUSER | unix.CLONE_NEWNS, eperm},
		{sandbox.Agent(), "clone NEWUSER in the high word ignored", unix.SYS_CLONE, auditArchX8664, 1 << 40, allow},
		{sandbox.Agent(), "clone3", unix.SYS_CLONE3, auditArchX8664, 0, enosys},
		{sandbox.Agent(), "x32 ptrace", unix.SYS_PTRACE | 0x40000000, auditArchX8664, 0, enosys},
		{sandbox.Agent(), "i386 getpid", 20, auditArchI386, 0, kill},

		{sandbox.DaemonProfile(), "read", unix.SYS_READ, auditArchX8664, 0, allow},
		{sandbox.DaemonProfile(), "bpf", unix.SYS_BPF, auditArchX8664, 0, allow},
		{sandbox.DaemonProfile(), "pidfd_send_signal", unix.SYS_PIDFD_SEND_SIGNAL, auditArchX8664, 0, allow},
		{sandbox.DaemonProfile(), "thread clone", unix.SYS_CLONE, auditArchX8664, threadFlags, allow},
		{sandbox.DaemonProfile(), "clone NEWUSER", unix.SYS_CLONE, auditArchX8664, threadFlags | unix.CLONE_NEWUSER, eperm},
		{sandbox.DaemonProfile(), "clone3", unix.SYS_CLONE3, auditArchX8664, 0, enosys},
		{sandbox.DaemonProfile(), "execve", unix.SYS_EXECVE, auditArchX8664, 0, kill},
		{sandbox.DaemonProfile(), "ptrace", unix.SYS_PTRACE, auditArchX8664, 0, kill},
		{sandbox.DaemonProfile(), "membarrier", unix.SYS_MEMBARRIER, auditArchX8664, 0, allow},
		{sandbox.DaemonProfile(), "listen", unix.SYS_LISTEN, auditArchX8664, 0, eperm},
		{sandbox.DaemonProfile(), "fchmodat", unix.SYS_FCHMODAT, auditArchX8664, 0, eperm},
		{sandbox.DaemonProfile(), "kill", unix.SYS_KILL, auditArchX8664, 0, eperm},
		{sandbox.DaemonProfile(), "mount", unix.SYS_MOUNT, auditArchX8664, 0, eperm},
		{sandbox.DaemonProfile(), "i386 read", 3, auditArchI386, 0, kill},
	}
	vms := map[string]*bpf.VM{}
	for _, c := range cases {
		vm := vms[c.profile.Name]
		if vm == nil {
			insts, err := c.profile.Assemble()
			if err != nil {
				t.Fatal(err)
			}
			if vm, err = bpf.NewVM(insts); err != nil {
				t.Fatalf("%s: %v", c.profile.Name, err)
			}
			vms[c.profile.Name] = vm
		}
		got, err := vm.Run(seccompData(c.nr, c.arch, c.arg0))
		if err != nil {
			t.Fatalf("%s %s: %v", c.profile.Name, c.name, err)
		}
		if uint32(got) != c.want {
			t.Errorf("%s %s: action %#x, want %#x", c.profile.Name, c.name, got, c.want)
		}
	}
}

// Command probe tries the syscalls the agent seccomp profile denies, with arguments that do no
// harm even when a call is allowed (bad flags, bad fds, NULL pointers), and prints one line per
// call: NAME=ERRNO (or NAME=OK). The sandbox tests run it with and without `dockwatch sandbox`.
//
//	probe syscalls   the denied-syscall list, plus a few calls that must stay allowed
//	probe int80      getpid through the i386 ABI (int 0x80), which the filter must kill
//	probe userns     fork+exec with and without CLONE_NEWUSER
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe syscalls|int80|userns")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "syscalls":
		probeSyscalls()
	case "int80":
		probeInt80()
	case "userns":
		probeUserns()
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

func errnoName(e syscall.Errno) string {
	if e == 0 {
		return "OK"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno%d", int(e))
}

func probeSyscalls() {
	const bad = 0xffff0000 // flag bits no syscall accepts
	noModule, _ := unix.BytePtrFromString("dockwatch_probe_no_such_module")
	ptr := uintptr(unsafe.Pointer(noModule))
	negOne := ^uintptr(0)
	calls := []struct {
		name string
		nr   uintptr
		args [6]uintptr
	}{
		{"ptrace", unix.SYS_PTRACE, [6]uintptr{unix.PTRACE_PEEKDATA, 0x3fffffff}},
		{"process_vm_readv", unix.SYS_PROCESS_VM_READV, [6]uintptr{uintptr(os.Getpid()), 0, 0, 0, 0, 1}},
		{"process_vm_writev", unix.SYS_PROCESS_VM_WRITEV, [6]uintptr{uintptr(os.Getpid()), 0, 0, 0, 0, 1}},
		{"pidfd_getfd", unix.SYS_PIDFD_GETFD, [6]uintptr{negOne, 0, 0}},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, [6]uintptr{0, 0}},
		{"io_uring_enter", unix.SYS_IO_URING_ENTER, [6]uintptr{negOne, 0, 0, 0, 0, 0}},
		{"io_uring_register", unix.SYS_IO_URING_REGISTER, [6]uintptr{negOne, 0, 0, 0}},
		{"bpf", unix.SYS_BPF, [6]uintptr{0xffff, 0, 0}},
		{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, [6]uintptr{0, 0, negOne, negOne, 0}},
		{"userfaultfd", unix.SYS_USERFAULTFD, [6]uintptr{bad}},
		{"kexec_load", unix.SYS_KEXEC_LOAD, [6]uintptr{0, 0, 0, bad}},
		{"kexec_file_load", unix.SYS_KEXEC_FILE_LOAD, [6]uintptr{negOne, negOne, 0, 0, bad}},
		{"init_module", unix.SYS_INIT_MODULE, [6]uintptr{0, 0, 0}},
		{"finit_module", unix.SYS_FINIT_MODULE, [6]uintptr{negOne, 0, 0}},
		{"delete_module", unix.SYS_DELETE_MODULE, [6]uintptr{ptr, unix.O_NONBLOCK}},
		{"keyctl", unix.SYS_KEYCTL, [6]uintptr{0xffff}},
		{"add_key", unix.SYS_ADD_KEY, [6]uintptr{0, 0, 0, 0, 0}},
		{"request_key", unix.SYS_REQUEST_KEY, [6]uintptr{0, 0, 0, 0}},
		{"mount", unix.SYS_MOUNT, [6]uintptr{0, 0, 0, 0, 0}},
		{"umount2", unix.SYS_UMOUNT2, [6]uintptr{0, 0}},
		{"pivot_root", unix.SYS_PIVOT_ROOT, [6]uintptr{0, 0}},
		{"move_mount", unix.SYS_MOVE_MOUNT, [6]uintptr{negOne, 0, negOne, 0, bad}},
		{"fsopen", unix.SYS_FSOPEN, [6]uintptr{0, 0}},
		{"fsconfig", unix.SYS_FSCONFIG, [6]uintptr{negOne, 0xffff, 0, 0, 0}},
		{"fsmount", unix.SYS_FSMOUNT, [6]uintptr{negOne, bad, 0}},
		{"fspick", unix.SYS_FSPICK, [6]uintptr{negOne, 0, bad}},
		{"open_tree", unix.SYS_OPEN_TREE, [6]uintptr{negOne, 0, bad}},
		{"mount_setattr", unix.SYS_MOUNT_SETATTR, [6]uintptr{negOne, 0, bad, 0, 0}},
		{"setns", unix.SYS_SETNS, [6]uintptr{negOne, 0}},
		// A multi-threaded process cannot unshare a user namespace (EINVAL), and the kernel refuses
		// CLONE_NEWUSER together with CLONE_FS (EINVAL), so neither can succeed without the filter.
		{"unshare_newuser", unix.SYS_UNSHARE, [6]uintptr{unix.CLONE_NEWUSER}},
		{"clone_newuser", unix.SYS_CLONE, [6]uintptr{unix.CLONE_NEWUSER | unix.CLONE_FS, 0, 0, 0, 0}},
		// clone3 with a NULL struct of size 0 is EINVAL without the filter.
		{"clone3", unix.SYS_CLONE3, [6]uintptr{0, 0}},
		// Must stay allowed: the argument filter is not a blanket deny.
		{"unshare_none", unix.SYS_UNSHARE, [6]uintptr{0}},
		{"getpid", unix.SYS_GETPID, [6]uintptr{}},
	}
	for _, c := range calls {
		_, _, e := unix.Syscall6(c.nr, c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5])
		fmt.Printf("%s=%s\n", c.name, errnoName(e))
	}
}

func probeUserns() {
	run := func(name string, attr *syscall.SysProcAttr) {
		cmd := exec.Command("/proc/self/exe", "syscalls")
		cmd.SysProcAttr = attr
		err := cmd.Run()
		var errno syscall.Errno
		switch {
		case err == nil:
			fmt.Printf("%s=OK\n", name)
		case errors.As(err, &errno):
			fmt.Printf("%s=%s\n", name, errnoName(errno))
		default:
			fmt.Printf("%s=%q\n", name, err.Error())
		}
	}
	run("fork", nil)
	run("fork_newuser", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER})
}

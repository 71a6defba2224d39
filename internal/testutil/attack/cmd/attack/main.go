// Command attack tries the ways around the socket gate that need more than a shell tool. The
// privileged suites (test/e2e, test/setgid) run it as the supervised user.
//
//	attack iouring-connect SOCKET  connect with io_uring (no connect syscall), then send an
//	                               exec-create request for container ctr
//	attack pidfd-getfd PID FD      copy file descriptor FD out of process PID
//	attack race SOCKET             one thread connects while another keeps writing an
//	                               exec-create request on the same socket, so the request
//	                               leaves the moment the connection exists, before any
//	                               post-connect check can act
//	attack memfd FILE ARGV...      copy FILE into a memfd and execveat it (AT_EMPTY_PATH)
//	attack ptrace PID              PTRACE_SEIZE a running process (and let go again)
//
// Exit status: 0 when the attempt worked (the socket answered, with 201 for race; the
// descriptor was copied; the process was seized), 3 when it was refused, 2 for usage errors and
// anything unexpected.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/testutil/attack"
)

const usage = "usage: attack iouring-connect SOCKET | pidfd-getfd PID FD | race SOCKET | memfd FILE ARGV... | ptrace PID"

func main() {
	if len(os.Args) < 3 {
		fail(2, usage)
	}
	switch os.Args[1] {
	case "iouring-connect":
		if len(os.Args) != 3 {
			fail(2, "iouring-connect needs SOCKET")
		}
		iouringConnect(os.Args[2])
	case "pidfd-getfd":
		if len(os.Args) != 4 {
			fail(2, "pidfd-getfd needs PID FD")
		}
		pid, err1 := strconv.Atoi(os.Args[2])
		fd, err2 := strconv.Atoi(os.Args[3])
		if err1 != nil || err2 != nil {
			fail(2, "pidfd-getfd: bad PID or FD")
		}
		pidfdGetfd(pid, fd)
	case "race":
		race(os.Args[2])
	case "memfd":
		memfd(os.Args[2], os.Args[3:])
	case "ptrace":
		pid, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fail(2, "ptrace: bad pid %q", os.Args[2])
		}
		seize(pid)
	default:
		fail(2, "unknown attempt %q; %s", os.Args[1], usage)
	}
}

func pidfdGetfd(pid, fd int) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		fail(2, "pidfd_open %d: %v", pid, err)
	}
	got, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		fail(3, "pidfd_getfd %d/%d: %v", pid, fd, err)
	}
	fmt.Printf("copied fd %d of pid %d as %d\n", fd, pid, got)
}

// io_uring ABI (include/uapi/linux/io_uring.h), only what one connect needs.
const (
	ioringOffSQRing    = 0
	ioringOffCQRing    = 0x8000000
	ioringOffSQEs      = 0x10000000
	ioringOpConnect    = 16
	ioringEnterGetEvts = 1
)

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type uringParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  sqringOffsets
	CQOff                                                                  cqringOffsets
}

type sqe struct {
	Opcode   uint8
	Flags    uint8
	Ioprio   uint16
	Fd       int32
	Off      uint64 // addr2: for connect, the address length
	Addr     uint64 // for connect, the sockaddr
	Len      uint32
	OpFlags  uint32
	UserData uint64
	Pad      [3]uint64
}

type cqe struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

func iouringConnect(path string) {
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail(2, "socket: %v", err)
	}
	var p uringParams
	ringFd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		fail(2, "io_uring_setup: %v", errno)
	}
	fd := int(ringFd)
	sqRing, err := unix.Mmap(fd, ioringOffSQRing, int(p.SQOff.Array+p.SQEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		fail(2, "mmap sq ring: %v", err)
	}
	cqRing, err := unix.Mmap(fd, ioringOffCQRing, int(p.CQOff.CQEs+p.CQEntries*uint32(unsafe.Sizeof(cqe{}))), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		fail(2, "mmap cq ring: %v", err)
	}
	sqes, err := unix.Mmap(fd, ioringOffSQEs, int(p.SQEntries*uint32(unsafe.Sizeof(sqe{}))), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		fail(2, "mmap sqes: %v", err)
	}

	// struct sockaddr_un, in memory the kernel reads when the request runs.
	addr := make([]byte, 2+108)
	*(*uint16)(unsafe.Pointer(&addr[0])) = unix.AF_UNIX
	if len(path) >= 108 {
		fail(2, "socket path too long")
	}
	copy(addr[2:], path)
	addrLen := 2 + len(path) + 1

	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	mask := *u32(sqRing, p.SQOff.RingMask)
	tail := atomic.LoadUint32(u32(sqRing, p.SQOff.Tail))
	idx := tail & mask
	e := (*sqe)(unsafe.Pointer(&sqes[uintptr(idx)*unsafe.Sizeof(sqe{})]))
	*e = sqe{Opcode: ioringOpConnect, Fd: int32(sock), Off: uint64(addrLen),
		Addr: uint64(uintptr(unsafe.Pointer(&addr[0]))), UserData: 1}
	*u32(sqRing, p.SQOff.Array+idx*4) = idx
	atomic.StoreUint32(u32(sqRing, p.SQOff.Tail), tail+1)

	_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), 1, 1, ioringEnterGetEvts, 0, 0)
	runtime.KeepAlive(addr)
	if errno != 0 {
		fail(2, "io_uring_enter: %v", errno)
	}
	head := atomic.LoadUint32(u32(cqRing, p.CQOff.Head))
	cmask := *u32(cqRing, p.CQOff.RingMask)
	c := (*cqe)(unsafe.Pointer(&cqRing[p.CQOff.CQEs+(head&cmask)*uint32(unsafe.Sizeof(cqe{}))]))
	res := c.Res
	atomic.StoreUint32(u32(cqRing, p.CQOff.Head), head+1)
	if res < 0 {
		fail(3, "io_uring connect %s: %v", path, syscall.Errno(-res))
	}

	f := os.NewFile(uintptr(sock), "socket")
	if _, err := f.WriteString(attack.ExecRequest()); err != nil {
		fail(3, "send request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(f), nil)
	if err != nil {
		fail(3, "read response: %v", err)
	}
	fmt.Println(strings.TrimSpace(resp.Status))
}

func race(path string) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		fail(2, "socket: %v", err)
	}
	req := []byte(attack.ExecRequest())
	sent := make(chan error, 1)
	go func() {
		// Its own OS thread, spinning on write until the other thread's connect completes.
		runtime.LockOSThread()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			_, err := unix.Write(fd, req)
			if err == unix.ENOTCONN || err == unix.EAGAIN {
				continue
			}
			sent <- err
			return
		}
		sent <- fmt.Errorf("never connected")
	}()
	runtime.LockOSThread()
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		fail(3, "connect %s: %v", path, err)
	}
	if err := <-sent; err != nil {
		fail(3, "send: %v", err)
	}
	resp, err := io.ReadAll(io.LimitReader(os.NewFile(uintptr(fd), "socket"), 4096))
	if err != nil && len(resp) == 0 {
		fail(3, "read: %v", err)
	}
	status, _, _ := bytes.Cut(resp, []byte("\r\n"))
	fmt.Println(string(status))
	if !strings.Contains(string(status), " 201 ") {
		os.Exit(3)
	}
}

func memfd(file string, argv []string) {
	data, err := os.ReadFile(file)
	if err != nil {
		fail(2, "read %s: %v", file, err)
	}
	fd, err := unix.MemfdCreate("docker", 0)
	if err != nil {
		fail(2, "memfd_create: %v", err)
	}
	if _, err := unix.Write(fd, data); err != nil {
		fail(2, "write memfd: %v", err)
	}
	argvp, envp := cStrings(argv), cStrings(os.Environ())
	empty := []byte{0}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	fail(2, "execveat: %v", errno)
}

func seize(pid int) {
	runtime.LockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		fail(3, "ptrace seize %d: %v", pid, err)
	}
	fmt.Printf("seized %d\n", pid)
	// PTRACE_DETACH needs a stopped tracee; interrupt it first.
	_ = unix.PtraceInterrupt(pid)
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, unix.WALL, nil)
	_ = unix.PtraceDetach(pid)
}

// cStrings is a NULL-terminated array of NUL-terminated strings, for execveat.
func cStrings(ss []string) []*byte {
	out := make([]*byte, 0, len(ss)+1)
	for _, s := range ss {
		p, err := unix.BytePtrFromString(s)
		if err != nil {
			fail(2, "%q: %v", s, err)
		}
		out = append(out, p)
	}
	return append(out, nil)
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "attack: "+format+"\n", args...)
	os.Exit(code)
}

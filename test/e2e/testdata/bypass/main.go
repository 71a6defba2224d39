// Command bypass tries ways around the socket gate that need more than a shell tool. The e2e
// test runs it as the supervised user.
//
//	bypass iouring-connect SOCKET   connect with io_uring (no connect syscall), then send an
//	                                exec-create request for container ctr
//	bypass pidfd-getfd PID FD       copy file descriptor FD out of process PID
//
// Exit status: 0 when the attempt worked (the socket answered, or the descriptor was copied),
// 3 when it was refused, 2 for usage errors and anything unexpected.
package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: bypass iouring-connect SOCKET | bypass pidfd-getfd PID FD")
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
	default:
		fail(2, "unknown attempt %q", os.Args[1])
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
	body := `{"Cmd":["true"]}`
	req := "POST /containers/ctr/exec HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := f.WriteString(req); err != nil {
		fail(3, "send request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(f), nil)
	if err != nil {
		fail(3, "read response: %v", err)
	}
	fmt.Println(strings.TrimSpace(resp.Status))
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bypass: "+format+"\n", args...)
	os.Exit(code)
}

package lsm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary doubles as every attack program: with DW_LSM_HELPER set it does one thing,
// prints one line and exits before the testing package looks at argv, so it can run under any
// argv[0] ("curl", or "docker" as a trusted client).
//
//	connect:PATH        connect to PATH and send an API request; "ok" or the errno name
//	setuid:UID:PATH     setresuid(UID) first (needs CAP_SETUID), then connect
//	race:PATH           one thread connects while another writes a request on the same socket
//	uring:PATH          connect with io_uring (IORING_OP_CONNECT), then send a request
//	sleep               print "ready", then sleep (a vetted client to attack)
//	ptrace:PID          PTRACE_SEIZE PID
//	mem:PID             open /proc/PID/mem for writing
//	vmread:PID          process_vm_readv one byte of PID
//	getfd:PID           pidfd_getfd of PID's fd 0
//	userns:SOCK:TARGET  in a new user and mount namespace (uid 0 mapped to the caller), bind
//	                    mount SOCK over the file TARGET and connect to TARGET
//	memfd:PATH          copy the binary PATH into a memfd and exec it as "docker ps" (the rest
//	                    of the environment is passed on)
func init() {
	if h := os.Getenv("DW_LSM_HELPER"); h != "" {
		os.Exit(helper(h))
	}
}

// request is what an attacker sends once connected: marked as hand-written, so the fake API
// records it as a tunnel request.
const request = "GET /v1.49/containers/json HTTP/1.1\r\nHost: docker\r\nX-Dockwatch-Tunnel: 1\r\n\r\n"

func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

func helper(h string) int {
	verb, rest, _ := strings.Cut(h, ":")
	pid, _ := strconv.Atoi(rest)
	switch verb {
	case "connect":
		fmt.Println(connectAndSend(rest))
	case "setuid":
		uidStr, path, _ := strings.Cut(rest, ":")
		uid, _ := strconv.Atoi(uidStr)
		if err := unix.Setresuid(uid, uid, uid); err != nil {
			fmt.Println("setuid:", err)
			return 3
		}
		fmt.Println(connectAndSend(path))
	case "race":
		fmt.Println(race(rest))
	case "uring":
		fmt.Println(uringConnect(rest))
	case "sleep":
		fmt.Println("ready")
		time.Sleep(2 * time.Minute)
	case "ptrace":
		runtime.LockOSThread()
		if err := unix.PtraceSeize(pid); err != nil {
			fmt.Println(errnoName(err))
			return 0
		}
		fmt.Println("ok")
	case "mem":
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/mem", pid), unix.O_RDWR, 0)
		if err != nil {
			fmt.Println(errnoName(err))
			return 0
		}
		unix.Close(fd)
		fmt.Println("ok")
	case "vmread":
		var b [1]byte
		local := []unix.Iovec{{Base: &b[0], Len: 1}}
		// Any address: EFAULT means access was granted, EPERM that it was not.
		remote := []unix.RemoteIovec{{Base: 0x10000, Len: 1}}
		if _, err := unix.ProcessVMReadv(pid, local, remote, 0); err != nil && !errors.Is(err, unix.EFAULT) {
			fmt.Println(errnoName(err))
			return 0
		}
		fmt.Println("ok")
	case "getfd":
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			fmt.Println("pidfd_open:", errnoName(err))
			return 3
		}
		fd, err := unix.PidfdGetfd(pidfd, 0, 0)
		if err != nil {
			fmt.Println(errnoName(err))
			return 0
		}
		unix.Close(fd)
		fmt.Println("ok")
	case "userns":
		fmt.Println(usernsBind(rest))
	case "bindconnect":
		sock, target, _ := strings.Cut(rest, ":")
		if err := unix.Mount(sock, target, "", unix.MS_BIND, ""); err != nil {
			fmt.Println("unsupported: bind mount in the user namespace:", errnoName(err))
			return 0
		}
		fmt.Println(connectAndSend(target))
	case "memfd":
		fmt.Println(memfdExec(rest))
		return 3
	default:
		fmt.Println("unknown helper", h)
		return 3
	}
	return 0
}

// usernsBind runs bindconnect in a child that starts in a new user and mount namespace: an
// unprivileged user is root there and may bind mount, but the socket keeps its inode.
func usernsBind(rest string) string {
	self, err := os.Executable()
	if err != nil {
		return "executable: " + err.Error()
	}
	uid, gid := os.Getuid(), os.Getgid()
	cmd := exec.Command(self)
	cmd.Args = []string{"curl"}
	cmd.Env = []string{"DW_LSM_HELPER=bindconnect:" + rest}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	line := strings.TrimSpace(string(out))
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled():
		return fmt.Sprintf("child %v: %s", ee, line)
	case err != nil && line == "":
		return "unsupported: user namespace: " + err.Error()
	}
	return line
}

// memfdExec execs a memfd copy of path: the new image's inode is the memfd's, not the
// trusted client's.
func memfdExec(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "read: " + err.Error()
	}
	fd, err := unix.MemfdCreate("docker", 0)
	if err != nil {
		return "unsupported: memfd_create: " + errnoName(err)
	}
	if _, err := unix.Write(fd, data); err != nil {
		return "write memfd: " + errnoName(err)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DW_LSM_HELPER=") {
			env = append(env, e)
		}
	}
	err = unix.Exec(fmt.Sprintf("/proc/self/fd/%d", fd), []string{"docker", "ps"}, env)
	return "exec memfd: " + errnoName(err)
}

func unixSocket() (int, error) {
	return unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}

// send writes the request and waits for the first bytes of the answer.
func send(fd int) string {
	if _, err := unix.Write(fd, []byte(request)); err != nil {
		return "write: " + errnoName(err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	var buf [64]byte
	if _, err := unix.Read(fd, buf[:]); err != nil {
		return "read: " + errnoName(err)
	}
	return "ok"
}

func connectAndSend(path string) string {
	fd, err := unixSocket()
	if err != nil {
		return "socket: " + err.Error()
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return errnoName(err)
	}
	return send(fd)
}

// race connects in one thread while another keeps writing a request to the same socket: a
// check that runs after connect() returned would let the writer through.
func race(path string) string {
	fd, err := unixSocket()
	if err != nil {
		return "socket: " + err.Error()
	}
	defer unix.Close(fd)
	var stop atomic.Bool
	wrote := make(chan string, 1)
	go func() {
		runtime.LockOSThread()
		last := "never tried"
		for !stop.Load() {
			if _, err := unix.Write(fd, []byte(request)); err == nil {
				wrote <- "ok"
				return
			} else {
				last = errnoName(err)
			}
		}
		wrote <- last
	}()
	time.Sleep(10 * time.Millisecond)
	cerr := unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	w := <-wrote
	c := "ok"
	if cerr != nil {
		c = errnoName(cerr)
	}
	return fmt.Sprintf("connect=%s write=%s", c, w)
}

// io_uring, just enough for one IORING_OP_CONNECT (include/uapi/linux/io_uring.h).
const (
	sysIOUringSetup = 425
	sysIOUringEnter = 426
	opConnect       = 16
	offSQRing       = 0
	offCQRing       = 0x8000000
	offSQEs         = 0x10000000
	enterGetEvents  = 1
	featSingleMmap  = 1
)

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type uringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  sqringOffsets
	CqOff                                                                  cqringOffsets
}

// uringConnect connects a socket through io_uring, which goes through no connect() syscall
// (and so past any syscall tracepoint), then sends the request with write().
func uringConnect(path string) string {
	var p uringParams
	ufd, _, errno := unix.Syscall(sysIOUringSetup, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return "unsupported: io_uring_setup: " + unix.ErrnoName(errno)
	}
	defer unix.Close(int(ufd))
	sqSize := int(p.SqOff.Array + p.SqEntries*4)
	cqSize := int(p.CqOff.Cqes + p.CqEntries*16)
	if p.Features&featSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	sq, err := unix.Mmap(int(ufd), offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return "unsupported: mmap sq: " + err.Error()
	}
	defer unix.Munmap(sq)
	cq := sq
	if p.Features&featSingleMmap == 0 {
		if cq, err = unix.Mmap(int(ufd), offCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return "unsupported: mmap cq: " + err.Error()
		}
		defer unix.Munmap(cq)
	}
	sqes, err := unix.Mmap(int(ufd), offSQEs, int(p.SqEntries*64), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return "unsupported: mmap sqes: " + err.Error()
	}
	defer unix.Munmap(sqes)

	fd, err := unixSocket()
	if err != nil {
		return "socket: " + err.Error()
	}
	defer unix.Close(fd)
	// struct sockaddr_un: family, then the NUL-terminated path.
	addr := make([]byte, 2+len(path)+1)
	*(*uint16)(unsafe.Pointer(&addr[0])) = unix.AF_UNIX
	copy(addr[2:], path)

	sqe := sqes[:64]
	clear(sqe)
	sqe[0] = opConnect
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
	*(*uint64)(unsafe.Pointer(&sqe[8])) = uint64(len(addr))                          // off: addrlen
	*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&addr[0]))) // addr
	*(*uint64)(unsafe.Pointer(&sqe[32])) = 42                                        // user_data
	mask := *(*uint32)(unsafe.Pointer(&sq[p.SqOff.RingMask]))
	tailp := (*uint32)(unsafe.Pointer(&sq[p.SqOff.Tail]))
	tail := atomic.LoadUint32(tailp)
	*(*uint32)(unsafe.Pointer(&sq[p.SqOff.Array+4*(tail&mask)])) = 0
	atomic.StoreUint32(tailp, tail+1)

	_, _, errno = unix.Syscall6(sysIOUringEnter, ufd, 1, 1, enterGetEvents, 0, 0)
	runtime.KeepAlive(addr)
	if errno != 0 {
		return "io_uring_enter: " + unix.ErrnoName(errno)
	}
	cmask := *(*uint32)(unsafe.Pointer(&cq[p.CqOff.RingMask]))
	head := atomic.LoadUint32((*uint32)(unsafe.Pointer(&cq[p.CqOff.Head])))
	if atomic.LoadUint32((*uint32)(unsafe.Pointer(&cq[p.CqOff.Tail]))) == head {
		return "no completion"
	}
	cqe := p.CqOff.Cqes + 16*(head&cmask)
	res := *(*int32)(unsafe.Pointer(&cq[cqe+8]))
	if res < 0 {
		return unix.ErrnoName(unix.Errno(-res))
	}
	return send(fd)
}

// Command attack tries the ways around the socket gate that need more than a shell tool and
// that test/e2e's bypass program does not cover. test/setgid runs it as the supervised user.
//
//	attack race SOCKET        one thread connects while another keeps writing an exec-create
//	                          request on the same socket, so the request leaves the moment
//	                          the connection exists, before any post-connect check can act
//	attack memfd FILE ARGV... copy FILE into a memfd and execveat it (AT_EMPTY_PATH)
//	attack ptrace PID         PTRACE_SEIZE a running process (and let go again)
//
// Exit status: 0 when the attempt worked (the socket answered 201, the process was seized),
// 3 when it was refused, 2 for usage errors and anything unexpected.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 3 {
		fail(2, "usage: attack race SOCKET | memfd FILE ARGV... | ptrace PID")
	}
	switch os.Args[1] {
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
		fail(2, "unknown attempt %q", os.Args[1])
	}
}

func execRequest() []byte {
	body := `{"Cmd":["true"]}`
	return []byte("POST /containers/ctr/exec HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

func race(path string) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		fail(2, "socket: %v", err)
	}
	req := execRequest()
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

// Command setuidhop is installed setuid-root by the e2e test. Started by a supervised user,
// it switches every uid and gid to another account and then either execs a command or dials a
// unix socket itself and sends one HTTP request. The test checks that the supervision mark
// follows the process through the uid change.
//
//	setuidhop UID GID exec PATH ARGV0 ARGS...
//	setuidhop UID GID dial SOCKET METHOD PATH BODY
//
// Exit status: the exec'd command's, or for dial 0 when a response arrived, 3 when the
// connect failed, 4 when the request failed after connecting, 2 for bad usage or setuid
// failure.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 5 {
		fail(2, "usage: setuidhop UID GID exec PATH ARGV0 ARGS... | setuidhop UID GID dial SOCKET METHOD PATH BODY")
	}
	uid, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fail(2, "bad uid %q: %v", os.Args[1], err)
	}
	gid, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fail(2, "bad gid %q: %v", os.Args[2], err)
	}
	// Order matters: groups and gid need the privilege that setuid gives up.
	if err := syscall.Setgroups([]int{gid}); err != nil {
		fail(2, "setgroups: %v", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		fail(2, "setresgid: %v", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		fail(2, "setresuid: %v", err)
	}
	switch mode, rest := os.Args[3], os.Args[4:]; mode {
	case "exec":
		if len(rest) < 2 {
			fail(2, "exec needs PATH ARGV0")
		}
		err := syscall.Exec(rest[0], rest[1:], os.Environ())
		fail(2, "exec %s: %v", rest[0], err)
	case "dial":
		if len(rest) != 4 {
			fail(2, "dial needs SOCKET METHOD PATH BODY")
		}
		dial(rest[0], rest[1], rest[2], rest[3])
	default:
		fail(2, "unknown mode %q", mode)
	}
}

func dial(socket, method, path, body string) {
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		fail(3, "connect %s: %v", socket, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.NewRequest(method, "http://docker"+path, strings.NewReader(body))
	if err != nil {
		fail(2, "build request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(conn); err != nil {
		fail(4, "send request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		fail(4, "read response: %v", err)
	}
	fmt.Println(resp.Status)
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "setuidhop: "+format+"\n", args...)
	os.Exit(code)
}

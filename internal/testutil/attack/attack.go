// Package attack holds what the privileged suites (test/e2e, test/setgid) share to attack the
// socket gate as the supervised user: the exec-create request they try to get to dockerd, the
// shell tools' command lines, and a look into a running client. The attacks that need more than
// a shell tool are the program in cmd/attack.
package attack

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/testutil/sysuser"
)

// execBody is the body of the exec-create request: run true in container ctr.
const execBody = `{"Cmd":["true"]}`

// ExecRequest is a raw HTTP/1.0 request that creates an exec instance in container ctr.
func ExecRequest() string {
	return "POST /containers/ctr/exec HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(execBody)) + "\r\n\r\n" + execBody
}

// Curl is the argv of curl sending the exec-create request to the socket at path.
func Curl(path string) []string {
	return []string{"curl", "-sS", "--max-time", "10", "--unix-socket", path, "-X", "POST",
		"-H", "Content-Type: application/json", "-d", execBody, "http://docker/containers/ctr/exec"}
}

// Python is a python3 -c script that connects to the socket argv[1], sends argv[2] and prints
// the answer.
const Python = `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode())
print(s.recv(4096))`

// SocketFd returns a file descriptor of process pid that is a socket, or -1.
func SocketFd(pid int) int {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	for _, ent := range entries {
		target, err := os.Readlink(filepath.Join(dir, ent.Name()))
		if err == nil && strings.HasPrefix(target, "socket:") {
			if n, err := strconv.Atoi(ent.Name()); err == nil && n > 2 {
				return n
			}
		}
	}
	return -1
}

// ShellQuote quotes each word for /bin/sh.
func ShellQuote(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return out
}

// BlockedActions are the dockerd event actions (or their prefixes, before ":") of the
// operations the policy blocks: none of them may show in dockerd's log after an attack.
var BlockedActions = []string{
	"exec_create", "exec_start", "exec_die", "commit", "export", "attach", "archive-path",
	"extract-to-dir", "import", "load", "save", "push", "tag",
}

// IsBlockedAction reports whether a dockerd event action is one of BlockedActions.
func IsBlockedAction(action string) bool {
	for _, a := range BlockedActions {
		if action == a || strings.HasPrefix(action, a+":") {
			return true
		}
	}
	return false
}

// StartClient starts `docker events` (allowed, connected, long-running) as u with the CLI at
// cli against DOCKER_HOST host, for the attacks on a running client, and waits until it holds
// a socket. stop ends it.
func StartClient(tb testing.TB, u *sysuser.User, cli, host string) (pid, fd int, stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := u.Command(ctx, []string{"DOCKER_HOST=" + host}, cli, "events")
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	cmd.Args[0] = "docker"
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatal(err)
	}
	stop = func() { cancel(); _ = cmd.Wait() }
	pid, fd = cmd.Process.Pid, -1
	for deadline := time.Now().Add(10 * time.Second); fd < 0 && time.Now().Before(deadline); {
		fd = SocketFd(pid)
		time.Sleep(50 * time.Millisecond)
	}
	if fd < 0 {
		stop()
		tb.Fatalf("docker events (pid %d) holds no socket", pid)
	}
	return pid, fd, stop
}

// CmdTimeout bounds every attack and CLI call of the suites: a blocked command that is not
// killed may hang (attach).
const CmdTimeout = 15 * time.Second

// Run runs the program at path with argv (argv[0] as given) as u, with env and stdin, and fails
// tb when it cannot run it at all. It gives up after CmdTimeout.
func Run(tb testing.TB, u *sysuser.User, env []string, stdin io.Reader, path string, argv ...string) sysuser.Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CmdTimeout)
	defer cancel()
	cmd, err := u.Command(ctx, env, path)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Args = argv
	cmd.Stdin = stdin
	res, err := sysuser.RunCmd(ctx, cmd)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

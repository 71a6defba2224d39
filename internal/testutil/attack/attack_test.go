package attack

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestExecRequest(t *testing.T) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(ExecRequest())))
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.URL.Path != "/containers/ctr/exec" || req.ContentLength != int64(len(execBody)) {
		t.Errorf("request %s %s, length %d", req.Method, req.URL, req.ContentLength)
	}
}

func TestShellQuote(t *testing.T) {
	words := []string{"a b", "it's", `{"Cmd":["true"]}`}
	out, err := exec.Command("/bin/sh", "-c", `printf '%s\n' `+strings.Join(ShellQuote(words), " ")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); strings.Join(got, "|") != strings.Join(words, "|") {
		t.Errorf("sh read %q, want %q", got, words)
	}
}

func TestSocketFd(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fd := SocketFd(os.Getpid()); fd < 3 {
		t.Errorf("SocketFd of this process, which listens on a socket, = %d", fd)
	}
	if fd := SocketFd(-1); fd != -1 {
		t.Errorf("SocketFd of no process = %d, want -1", fd)
	}
}

func TestIsBlockedAction(t *testing.T) {
	for action, want := range map[string]bool{
		"exec_create: true": true, "exec_start": true, "tag": true, "archive-path": true,
		"start": false, "create": false, "exec": false, "tagged": false,
	} {
		if got := IsBlockedAction(action); got != want {
			t.Errorf("IsBlockedAction(%q) = %v, want %v", action, got, want)
		}
	}
}

package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/testutil/daemon"
)

// notifyReceiver stands in for systemd's notify socket and keeps every datagram.
type notifyReceiver struct {
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
	done chan struct{}
}

func newNotifyReceiver(t *testing.T, path string) *notifyReceiver {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyReceiver{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, strings.TrimSpace(string(buf[:k])))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-n.done
		os.Remove(path)
	})
	return n
}

// count is how many datagrams equal msg.
func (n *notifyReceiver) count(msg string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m == msg {
			c++
		}
	}
	return c
}

// seccompStatus returns the Seccomp, Seccomp_filters and NoNewPrivs lines of every thread of pid.
func seccompStatus(t *testing.T, pid int) map[string][]string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "Seccomp" || k == "Seccomp_filters" || k == "NoNewPrivs") {
				out[task.Name()] = append(out[task.Name()], k+"="+strings.TrimSpace(v))
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no threads of %d found", pid)
	}
	return out
}

// testSelfSeccomp checks that the running daemon is under its own seccomp filter, on every
// thread, and that what it does after setup still works under it: sd_notify and the watchdog,
// reloads that swap tables and that attach new programs, enforcement, status and the exit. The
// other subtests run the filtered daemon too (it is the default); this one proves the filter is
// there. --no-self-seccomp leaves it off.
func (e *env) testSelfSeccomp(t *testing.T) {
	notify := newNotifyReceiver(t, filepath.Join(e.dir, "notify.sock"))
	t.Setenv("NOTIFY_SOCKET", filepath.Join(e.dir, "notify.sock"))
	t.Setenv("WATCHDOG_USEC", "200000")
	cfg := filepath.Join(e.dir, "seccomp.toml")
	e.writeConfig(t, cfg, daemonConfig{})
	pins := e.pinDir(t)
	d := e.start(t, cfg, pins)
	pid := d.Pid()

	for task, lines := range seccompStatus(t, pid) {
		if got := strings.Join(lines, " "); got != "NoNewPrivs=1 Seccomp=2 Seccomp_filters=1" {
			t.Errorf("daemon thread %s: %s, want NoNewPrivs=1 Seccomp=2 Seccomp_filters=1", task, got)
		}
	}
	if msg := e.lastDaemonMessage(t); !strings.Contains(msg, "self seccomp on") {
		t.Errorf("the startup event does not say the filter is on: %q", msg)
	}
	waitFor(t, "READY=1 and two WATCHDOG=1 on the notify socket", 10*time.Second, func() bool {
		return notify.count("READY=1") >= 1 && notify.count("WATCHDOG=1") >= 2
	})

	// A reload that only swaps the tables (map updates and membarrier under the filter).
	if killed, res := e.docker(t, "logs", "ctr"); killed {
		t.Fatalf("docker logs killed before the reload: %v", res)
	}
	blockLogs := []string{"exec", "cp", "commit", "diff", "export", "import", "load", "save", "attach",
		"push", "tag", "logs"}
	e.reload(t, d, cfg, daemonConfig{block: blockLogs}, "reloaded", 1)
	if killed, res := e.docker(t, "logs", "ctr"); !killed {
		t.Errorf("docker logs not killed after a reload under the filter: %v", res)
	}
	// A reload that loads and attaches new programs and renames their pins into place.
	e.reload(t, d, cfg, daemonConfig{block: blockLogs, invalidLine: `undecided = "allow"`}, "reloaded", 2)
	if !strings.Contains(d.Stderr(), "programs replaced") {
		t.Errorf("changing policy.undecided did not replace the programs under the filter:\n%s", daemon.Tail(d.Stderr(), 5))
	}
	if strings.Contains(d.Stderr(), "reload rejected") {
		t.Errorf("a reload failed under the filter:\n%s", daemon.Tail(d.Stderr(), 10))
	}
	if killed, res := e.docker(t, "exec", "ctr", "true"); !killed {
		t.Errorf("docker exec not killed after the reloads: %v", res)
	}
	if killed, res := e.docker(t, "ps"); killed || res.ExitCode != 0 {
		t.Errorf("docker ps after the reloads: %v", res)
	}
	if n := notify.count("RELOADING=1"); n != 2 {
		t.Errorf("%d RELOADING=1 on the notify socket, want 2", n)
	}
	st, err := e.dockwatch(t, nil, "status", "-o", "json", "--socket", e.socket())
	if err != nil || !strings.Contains(st, "reloaded") {
		t.Errorf("status after the reloads: %v\n%s", err, st)
	}
	for task, lines := range seccompStatus(t, pid) {
		if !strings.Contains(strings.Join(lines, " "), "Seccomp=2") {
			t.Errorf("daemon thread %s after the reloads: %v", task, lines)
		}
	}
	stop(t, d)
	if n := notify.count("STOPPING=1"); n != 1 {
		t.Errorf("%d STOPPING=1 on the notify socket, want 1", n)
	}
	if strings.Contains(d.Stderr(), "operation not permitted") {
		t.Errorf("something in the daemon was refused:\n%s", daemon.Tail(d.Stderr(), 20))
	}

	// --no-self-seccomp: the same daemon without the filter.
	t.Setenv("NOTIFY_SOCKET", "")
	off := e.start(t, cfg, pins, "--no-self-seccomp")
	for task, lines := range seccompStatus(t, off.Pid()) {
		if got := strings.Join(lines, " "); !strings.Contains(got, "Seccomp=0") {
			t.Errorf("daemon thread %s with --no-self-seccomp: %s, want Seccomp=0", task, got)
		}
	}
	if msg := e.lastDaemonMessage(t); !strings.Contains(msg, "self seccomp off") {
		t.Errorf("the startup event with --no-self-seccomp: %q", msg)
	}
	stop(t, off)
}

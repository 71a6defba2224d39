// Package e2e runs dockwatch against Debian's real dockerd, the real docker CLI and throwaway
// users: blocked commands die, allowed ones work, bypasses reach nothing, other users are
// untouched, and dockerd's own event log confirms that no blocked operation ran.
//
// It needs root, dockerd and a kernel that loads BPF programs, and skips (saying why) without
// them.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/testutil/dockerd"
	"github.com/dockwatch/dockwatch/internal/testutil/sysuser"
)

// cmdTimeout bounds every CLI call; a blocked command that is not killed may hang (attach).
const cmdTimeout = 15 * time.Second

// blockedActions are dockerd event actions (or their prefixes) of the blocked operations.
var blockedActions = []string{
	"exec_create", "exec_start", "exec_die", "commit", "export", "attach", "archive-path",
	"extract-to-dir", "import", "load", "save", "push", "tag",
}

func isBlockedAction(action string) bool {
	for _, a := range blockedActions {
		if action == a || strings.HasPrefix(action, a+":") {
			return true
		}
	}
	return false
}

// execRequest is a raw HTTP request that creates an exec instance in container ctr.
func execRequest() string {
	body := `{"Cmd":["true"]}`
	return "POST /containers/ctr/exec HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

type env struct {
	d       *dockerd.Daemon
	group   *sysuser.Group
	worker  *sysuser.User // supervised
	other   *sysuser.User // in the socket group, not supervised
	dir     string        // fixtures, reachable by both users
	demo    demoRewriter
	cli     string // the trusted docker CLI
	bin     string // built dockwatch
	cfg     string
	watch   *watchdog
	blocked [][]string // argv of the blocked commands that ran, for the events check
}

func TestEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root (euid %d)", os.Geteuid())
	}
	skipUnlessBPF(t)
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skipf("bpftool is not installed: %v", err)
	}

	e := &env{}
	e.group = sysuser.NewGroup(t)
	e.d = dockerd.Start(t, dockerd.Options{Group: e.group.Name})
	e.cli = e.d.CLI
	e.worker = sysuser.NewUser(t, e.group)
	e.other = sysuser.NewUser(t, e.group)
	e.setUpFixtures(t)

	// DOCKWATCH_BIN runs a prebuilt binary instead of building cmd/dockwatch.
	if e.bin = os.Getenv("DOCKWATCH_BIN"); e.bin == "" {
		e.bin = filepath.Join(e.dir, "dockwatch")
		goBuild(t, "cmd/dockwatch", e.bin)
	}
	// One setuid-root copy per user, each runnable by that user's group alone: a setuid
	// program that switches to any uid must not be open to every local account.
	hop := filepath.Join(e.dir, "setuidhop")
	goBuild(t, "test/e2e/testdata/setuidhop", hop)
	installSetuidRoot(t, hop, e.hop(e.worker), e.worker.GID)
	installSetuidRoot(t, hop, e.hop(e.other), e.other.GID)

	e.d.MustDocker(t, "run", "-d", "--name", "ctr", dockerd.Image, "sleep", "3600")
	e.writeConfig(t)
	e.watch = startDockwatch(t, e.bin, e.cfg, e.dir)

	t.Run("blocked", e.testBlocked)
	t.Run("allowed", e.testAllowed)
	t.Run("bypasses", e.testBypasses)
	t.Run("untouched", e.testUntouched)
	t.Run("events", e.testEvents)
	t.Run("stop", e.testStop)
}

// setUpFixtures creates the directory the corpus calls /srv/demo, the worker's docker
// context "ctx", and copies of the docker CLI.
func (e *env) setUpFixtures(t *testing.T) {
	removeStaleFixtures(t)
	dir, err := os.MkdirTemp("", fixturePrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove fixtures: %v", err)
		}
	})
	e.dir = dir
	e.demo = demoRewriter{demoDir: filepath.Join(dir, "demo"), host: e.d.Host}
	mkdir := func(p string, owner *sysuser.User) {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != nil {
			if err := os.Chown(p, owner.UID, owner.GID); err != nil {
				t.Fatal(err)
			}
		}
	}
	write := func(p, body string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	demo := e.demo.demoDir
	mkdir(dir, nil)
	mkdir(filepath.Join(dir, "bin"), nil)
	mkdir(filepath.Join(dir, "plugins"), nil)
	mkdir(demo, nil)
	mkdir(filepath.Join(demo, "out"), e.worker)
	mkdir(filepath.Join(demo, "tls"), nil)
	mkdir(filepath.Join(demo, "home", ".docker"), e.worker)
	mkdir(filepath.Join(demo, "evilcfg", "cli-plugins"), nil)
	// An empty tar archive is two zero blocks.
	write(filepath.Join(demo, "empty.tar"), strings.Repeat("\x00", 1024), 0o644)
	write(filepath.Join(demo, "dialstdio-req.txt"), "GET /_ping HTTP/1.0\r\n\r\n", 0o644)
	// If the CLI ever got to run an attacker plugin, the plugin leaves a mark.
	write(filepath.Join(demo, "evilcfg", "cli-plugins", "docker-evil"),
		"#!/bin/sh\ntouch "+filepath.Join(demo, "out", "evil-ran")+"\n", 0o755)

	// The worker's docker context "ctx" points at the private socket. Root writes it into
	// the worker's config so that creating it does not depend on the policy.
	cfgDir := filepath.Join(e.worker.Home, ".docker")
	cmd := exec.Command(e.cli, "context", "create", "ctx", "--docker", "host="+e.d.Host)
	cmd.Env = []string{"HOME=" + e.worker.Home, "DOCKER_CONFIG=" + cfgDir}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create context ctx: %v\n%s", err, out)
	}
	if err := chownTree(cfgDir, e.worker.UID, e.worker.GID); err != nil {
		t.Fatal(err)
	}

	if err := copyFile(e.cli, filepath.Join(dir, "bin", "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(e.cli, filepath.Join(dir, "bin", "dockr"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// fixturePrefix starts the name of the fixtures directory in os.TempDir.
const fixturePrefix = "dwe2e"

// removeStaleFixtures removes the fixtures of test processes that no longer run; they hold
// setuid-root programs whose owning group may be reused once the test's users are gone.
func removeStaleFixtures(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fixturePrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove stale fixtures %s: %v", dir, err)
		}
	}
}

func (e *env) writeConfig(t *testing.T) {
	q := strconv.Quote
	cfg := fmt.Sprintf(`[supervise]
users = [%s]
follow_children = true

[docker]
sockets = [%s]
clients = [%s]
plugin_dirs = [%s]
access = "group"

[policy]
mode = "enforce"

[events]
socket = %s
group = "root"

[metrics]
listen = ""
`, q(e.worker.Name), q(e.d.Socket), q(e.cli), q(filepath.Join(e.dir, "plugins")),
		q(filepath.Join(e.dir, "events.sock")))
	e.cfg = filepath.Join(e.dir, "dockwatch.toml")
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs argv (argv[0] as given, the program at path) as u with a timeout.
func run(t *testing.T, u *sysuser.User, env []string, stdin io.Reader, path string, argv ...string) sysuser.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd, err := u.Command(ctx, env, path)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Args = argv
	cmd.Stdin = stdin
	res, err := sysuser.RunCmd(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// dockerAs runs the trusted docker CLI as u against the private dockerd.
func (e *env) dockerAs(t *testing.T, u *sysuser.User, args ...string) sysuser.Result {
	t.Helper()
	return run(t, u, []string{"DOCKER_HOST=" + e.d.Host}, nil, e.cli, append([]string{"docker"}, args...)...)
}

// quiet checks that dockerd saw no API call and logged no blocked operation since mark/since.
func (e *env) quiet(t *testing.T, what string, mark int64, since time.Time) {
	t.Helper()
	calls, err := e.d.APICalls(mark)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) > 0 {
		t.Errorf("%s: %d API calls reached dockerd, first: %q", what, len(calls), calls[:min(len(calls), 8)])
	}
	events, err := e.d.Events(context.Background(), since, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, ev := range events {
		if isBlockedAction(ev.Action) {
			ran = append(ran, ev.String())
		}
	}
	if len(ran) > 0 {
		t.Errorf("%s: dockerd ran %d blocked operations, first: %q", what, len(ran), ran[:min(len(ran), 8)])
	}
}

func (e *env) testBlocked(t *testing.T) {
	rows := readCorpus(t)
	mark, since := e.d.LogOffset(), time.Now()
	ran := 0
	for _, r := range rows {
		if r.Expected != "BLOCK" {
			continue
		}
		if r.Binary != "" {
			t.Logf("line %d (%s): skipped, it runs %s, which is not the docker CLI and is not installed here",
				r.Line, r.Reason, r.Binary)
			continue
		}
		argv := e.demo.argv(r.Argv)
		env := []string{"DOCKER_HOST=" + e.d.Host}
		for k, v := range r.Env {
			if k == "DOCKER_HOST" {
				env = slices.DeleteFunc(env, func(s string) bool { return strings.HasPrefix(s, "DOCKER_HOST=") })
			}
			if v != "<unset>" {
				env = append(env, k+"="+e.demo.rewrite(v))
			}
		}
		var stdin io.Reader
		if r.Stdin != "" {
			f, err := os.Open(e.demo.rewrite(r.Stdin))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			stdin = f
		}
		res := run(t, e.worker, env, stdin, e.cli, argv...)
		ran++
		e.blocked = append(e.blocked, argv)
		if !res.Killed() {
			t.Errorf("line %d (%s): %q was not killed: %v", r.Line, r.Reason, argv, res)
		}
	}
	if ran == 0 {
		t.Fatal("the corpus has no BLOCK rows for the docker CLI")
	}
	t.Logf("%d blocked commands ran as %s (compose and buildx are not installed, so their rows test the classifier's kill alone)",
		ran, e.worker.Name)
	e.quiet(t, "blocked commands", mark, since)
	if _, err := os.Stat(filepath.Join(e.demo.demoDir, "out", "evil-ran")); err == nil {
		t.Error("the attacker's CLI plugin ran")
	}
}

func (e *env) testAllowed(t *testing.T) {
	mark := e.d.LogOffset()
	for _, args := range [][]string{
		{"ps", "-a"},
		{"images"},
		{"run", "--rm", dockerd.Image, "true"},
		{"logs", "ctr"},
		{"inspect", "ctr"},
		{"run", "-d", "--name", "dwallowed", dockerd.Image, "sleep", "300"},
		{"stop", "-t", "1", "dwallowed"},
		{"start", "dwallowed"},
		{"stop", "-t", "1", "dwallowed"},
		{"rm", "dwallowed"},
	} {
		if res := e.dockerAs(t, e.worker, args...); res.ExitCode != 0 || res.Signaled || res.TimedOut {
			t.Errorf("docker %s as the supervised user: %v", strings.Join(args, " "), res)
		}
	}
	calls, err := e.d.APICalls(mark)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 {
		t.Error("allowed commands made no API calls")
	}
}

func (e *env) testBypasses(t *testing.T) {
	req := execRequest()
	sock := e.d.Socket
	link := filepath.Join(e.dir, "link.sock")
	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	hardlink := filepath.Join(e.dir, "bin", "dkr")
	hardlinkErr := os.Link(e.cli, hardlink)
	hop := e.hop(e.worker)
	dockerEnv := []string{"DOCKER_HOST=" + e.d.Host}
	curl := func(socket string) []string {
		return []string{"curl", "-sS", "--max-time", "10", "--unix-socket", socket, "-X", "POST",
			"-H", "Content-Type: application/json", "-d", `{"Cmd":["true"]}`, "http://docker/containers/ctr/exec"}
	}
	python := `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode())
print(s.recv(4096))`

	cases := []struct {
		name  string
		path  string
		argv  []string
		env   []string
		stdin string
		skip  string
	}{
		{name: "curl", path: "/usr/bin/curl", argv: curl(sock)},
		{name: "python", path: "/usr/bin/python3", argv: []string{"python3", "-c", python, sock, req}},
		{name: "nc", path: "/usr/bin/nc", argv: []string{"nc", "-N", "-w", "5", "-U", sock}, stdin: req},
		{name: "copied-cli", path: filepath.Join(e.dir, "bin", "docker"),
			argv: []string{"docker", "exec", "ctr", "true"}, env: dockerEnv},
		{name: "renamed-copy", path: filepath.Join(e.dir, "bin", "dockr"),
			argv: []string{"dockr", "exec", "ctr", "true"}, env: dockerEnv},
		{name: "renamed-hardlink", path: hardlink,
			argv: []string{"dkr", "exec", "ctr", "true"}, env: dockerEnv,
			skip: errString(hardlinkErr, "cannot hard-link the CLI into the fixtures: ")},
		{name: "copied-cli-ps", path: filepath.Join(e.dir, "bin", "docker"),
			argv: []string{"docker", "ps"}, env: dockerEnv},
		{name: "symlinked-socket", path: "/usr/bin/curl", argv: curl(link)},
		{name: "proc-self-root", path: "/usr/bin/curl", argv: curl("/proc/self/root" + sock)},
		{name: "setuid-exec-docker", path: hop,
			argv: []string{"setuidhop", strconv.Itoa(e.other.UID), strconv.Itoa(e.group.GID),
				"exec", e.cli, "docker", "exec", "ctr", "true"}, env: dockerEnv},
		{name: "setuid-dial", path: hop,
			argv: []string{"setuidhop", strconv.Itoa(e.other.UID), strconv.Itoa(e.group.GID),
				"dial", sock, "POST", "/containers/ctr/exec", `{"Cmd":["true"]}`}},
		{name: "setuid-exec-curl", path: hop,
			argv: append([]string{"setuidhop", strconv.Itoa(e.other.UID), strconv.Itoa(e.group.GID),
				"exec", "/usr/bin/curl"}, curl(sock)...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.skip != "" {
				t.Skip(c.skip)
			}
			if _, err := os.Stat(c.path); err != nil {
				t.Skipf("%s is not installed: %v", c.path, err)
			}
			mark, since := e.d.LogOffset(), time.Now()
			var stdin io.Reader
			if c.stdin != "" {
				stdin = strings.NewReader(c.stdin)
			}
			res := run(t, e.worker, c.env, stdin, c.path, c.argv...)
			t.Logf("outcome: %v", res)
			switch {
			case res.TimedOut:
				t.Errorf("%s hung instead of being refused or killed: %v", c.name, res)
			case !res.Signaled && res.ExitCode == 0:
				t.Errorf("%s succeeded: %v", c.name, res)
			}
			e.quiet(t, c.name, mark, since)
			e.reported(t, c.name, res.Pid)
		})
	}

	// The same setuid hop, started by a user who is not supervised, does reach dockerd: the
	// refusals above come from the mark the worker's process carries.
	t.Run("setuid-control", func(t *testing.T) {
		res := run(t, e.other, nil, nil, e.hop(e.other), "setuidhop", strconv.Itoa(e.other.UID), strconv.Itoa(e.group.GID),
			"dial", sock, "POST", "/containers/ctr/exec", `{"Cmd":["true"]}`)
		if res.ExitCode != 0 || !strings.Contains(string(res.Stdout), "201") {
			t.Errorf("setuidhop as the unsupervised user: %v", res)
		}
	})
}

func (e *env) testUntouched(t *testing.T) {
	since := time.Now()
	if _, err := e.d.Docker(context.Background(), "exec", "ctr", "true"); err != nil {
		t.Errorf("root's docker exec: %v", err)
	}
	if res := e.dockerAs(t, e.other, "exec", "ctr", "true"); res.ExitCode != 0 || res.Signaled {
		t.Errorf("docker exec as the unsupervised user: %v", res)
	}
	res := run(t, e.other, nil, nil, "/usr/bin/curl", "curl", "-sS", "--max-time", "10",
		"--unix-socket", e.d.Socket, "http://docker/containers/ctr/json")
	if res.ExitCode != 0 || !strings.Contains(string(res.Stdout), `"Name":"/ctr"`) {
		t.Errorf("curl on the socket as the unsupervised user: %v", res)
	}
	events, err := e.d.Events(context.Background(), since, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	execs := 0
	for _, ev := range events {
		if strings.HasPrefix(ev.Action, "exec_start") {
			execs++
		}
	}
	if execs < 2 {
		t.Errorf("dockerd logged %d exec starts, want 2 (root and the unsupervised user): %v", execs, events)
	}
}

func (e *env) testEvents(t *testing.T) {
	if len(e.blocked) == 0 {
		t.Skip("no blocked commands ran")
	}
	var missing [][]string
	deadline := time.Now().Add(5 * time.Second)
	for {
		missing = missing[:0]
		events := e.watch.Events()
		for _, argv := range e.blocked {
			if !slices.ContainsFunc(events, func(ev Event) bool { return e.isKill(ev, argv) }) {
				missing = append(missing, argv)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	events := e.watch.Events()
	for _, argv := range missing[:min(len(missing), 10)] {
		t.Errorf("no kill event (kind exec, verdict block, action killed, rule, command or reason, uid %d) for %q",
			e.worker.UID, argv)
		for _, ev := range events {
			if slices.Equal(ev.Argv, argv) {
				t.Logf("  its event: %+v", ev)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d blocked commands have no kill event", len(missing), len(e.blocked))
	}
	e.watch.mu.Lock()
	bad := e.watch.bad
	e.watch.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("dockwatch printed %d lines that are not events, first %q", len(bad), bad[0])
	}
}

// reported checks that dockwatch printed an event that kills or denies process pid.
func (e *env) reported(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, ev := range e.watch.Events() {
			if ev.PID == pid && (ev.Action == "killed" || ev.Action == "denied") {
				t.Logf("dockwatch: %s %s %s rule=%q command=%q", ev.Kind, ev.Verdict, ev.Action, ev.Rule, ev.Command)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: dockwatch printed no event that kills or denies pid %d", what, pid)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isKill reports whether ev records the kill of argv run by the worker. An unknown command or
// plugin resolves to no command path, so for rule "unknown" the reason must say what it was.
func (e *env) isKill(ev Event, argv []string) bool {
	explained := ev.Command != "" || (ev.Rule == "unknown" && ev.Reason != "")
	return ev.Kind == "exec" && ev.Verdict == "block" && ev.Action == "killed" &&
		ev.Rule != "" && explained && ev.UID == e.worker.UID && slices.Equal(ev.Argv, argv)
}

func (e *env) testStop(t *testing.T) {
	if len(e.watch.progs) == 0 {
		t.Fatal("found no BPF programs of the running dockwatch to check")
	}
	if err := e.watch.stop(); err != nil {
		t.Error(err)
	}
	// The kernel frees tracing programs after an RCU grace period, so a closed program can
	// stay listed for a moment.
	var left []bpfProg
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if left, err = leftoverProgs(e.watch.progs); err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("BPF programs still loaded after dockwatch stopped: %v", left)
	}
}

// hop is the path of u's setuid-root copy of setuidhop.
func (e *env) hop(u *sysuser.User) string {
	return filepath.Join(e.dir, "bin", "setuidhop-"+u.Name)
}

// installSetuidRoot copies src to dst as root:gid, mode 4750.
func installSetuidRoot(t *testing.T, src, dst string, gid int) {
	t.Helper()
	if err := copyFile(src, dst, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dst, 0, gid); err != nil {
		t.Fatal(err)
	}
	// chmod after chown: chown clears the set-user-ID bit.
	if err := os.Chmod(dst, 0o750|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return out.Close()
}

func chownTree(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		return nil
	})
}

func errString(err error, prefix string) string {
	if err == nil {
		return ""
	}
	return prefix + err.Error()
}

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

	"github.com/dockwatch/dockwatch/internal/testutil/attack"
	"github.com/dockwatch/dockwatch/internal/testutil/corpus"
	"github.com/dockwatch/dockwatch/internal/testutil/daemon"
	"github.com/dockwatch/dockwatch/internal/testutil/dockerd"
	"github.com/dockwatch/dockwatch/internal/testutil/fsutil"
	"github.com/dockwatch/dockwatch/internal/testutil/gobuild"
	"github.com/dockwatch/dockwatch/internal/testutil/sysuser"
)

type env struct {
	access  string // "group" or "setgid"
	d       *dockerd.Daemon
	group   *sysuser.Group
	worker  *sysuser.User // supervised
	other   *sysuser.User // in the socket group, not supervised
	dir     string        // fixtures, reachable by both users
	demo    demoRewriter
	cli     string // the trusted docker CLI the worker runs
	bin     string // built dockwatch
	cfg     string
	watch   *watchdog
	blocked [][]string // argv of the blocked commands that ran, for the events check
}

// TestEndToEnd runs the suite with the seed's set-up: the worker stays in the socket's group
// and the BPF connect gate is the barrier.
func TestEndToEnd(t *testing.T) { testScenario(t, "group") }

// TestEndToEndSetgid runs the suite with setgid access (DESIGN.md §1.9): the worker is not in
// the socket's group and reaches the socket only through a setgid copy of the CLI.
func TestEndToEndSetgid(t *testing.T) { testScenario(t, "setgid") }

func testScenario(t *testing.T, access string) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root (euid %d)", os.Geteuid())
	}
	skipUnlessBPF(t)
	sysuser.SkipIfNotRoot(t)
	dockerd.SkipUnlessAvailable(t)
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skipf("bpftool is not installed: %v", err)
	}

	e := &env{access: access}
	e.group = sysuser.NewGroup(t)
	e.d = dockerd.Start(t, dockerd.Options{Group: e.group.Name})
	if access == "setgid" {
		e.worker = sysuser.NewUser(t)
	} else {
		e.worker = sysuser.NewUser(t, e.group)
	}
	e.other = sysuser.NewUser(t, e.group)
	e.setUpFixtures(t)
	e.cli = e.d.CLI
	if access == "setgid" {
		// install -o root -g <socket group> -m 2755, as the README tells operators.
		e.cli = filepath.Join(e.dir, "bin", "docker-sg")
		installSetID(t, e.d.CLI, e.cli, e.group.GID, 0o755|os.ModeSetgid)
	}

	// DOCKWATCH_BIN runs a prebuilt binary instead of building cmd/dockwatch.
	e.bin = gobuild.Dockwatch(t, e.dir)
	// One setuid-root copy per user, each runnable by that user's group alone: a setuid
	// program that switches to any uid must not be open to every local account.
	hop := filepath.Join(e.dir, "setuidhop")
	gobuild.Build(t, "test/e2e/testdata/setuidhop", hop)
	installSetID(t, hop, e.hop(e.worker), e.worker.GID, 0o750|os.ModeSetuid)
	installSetID(t, hop, e.hop(e.other), e.other.GID, 0o750|os.ModeSetuid)
	gobuild.Build(t, "internal/testutil/attack/cmd/attack", filepath.Join(e.dir, "bin", "attack"))

	e.d.MustDocker(t, "run", "-d", "--name", "ctr", dockerd.Image, "sleep", "3600")
	if access == "setgid" {
		t.Run("startup-checks", e.testStartupChecks)
	}
	e.cfg = e.writeConfig(t, "dockwatch.toml", e.worker.Name, e.cli)
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
	mkdir(filepath.Join(dir, "marks"), e.worker)
	mkdir(filepath.Join(demo, "tls"), nil)
	mkdir(filepath.Join(demo, "home", ".docker"), e.worker)
	mkdir(filepath.Join(demo, "evilcfg", "cli-plugins"), nil)
	// An empty tar archive is two zero blocks.
	write(filepath.Join(demo, "empty.tar"), strings.Repeat("\x00", 1024), 0o644)
	write(filepath.Join(demo, "dialstdio-req.txt"), "GET /_ping HTTP/1.0\r\n\r\n", 0o644)
	if err := os.Symlink(e.d.Socket, e.linkSocket()); err != nil {
		t.Fatal(err)
	}
	// Programs the CLI may be made to run (a plugin, a credential helper, an ssh
	// ProxyCommand). Each leaves a mark, then tries the socket itself.
	for _, name := range []string{"plugin", "credhelper", "proxycommand"} {
		write(filepath.Join(dir, "bin", "evil-"+name), e.evilScript(name), 0o755)
	}
	if err := os.Symlink(filepath.Join(dir, "bin", "evil-plugin"), filepath.Join(demo, "evilcfg", "cli-plugins", "docker-evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "bin", "evil-credhelper"), filepath.Join(dir, "bin", "docker-credential-dwevil")); err != nil {
		t.Fatal(err)
	}

	// The worker's docker context "ctx" points at the private socket. Root writes it into
	// the worker's config so that creating it does not depend on the policy.
	cfgDir := filepath.Join(e.worker.Home, ".docker")
	cmd := exec.Command(e.d.CLI, "context", "create", "ctx", "--docker", "host="+e.d.Host)
	cmd.Env = []string{"HOME=" + e.worker.Home, "DOCKER_CONFIG=" + cfgDir}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create context ctx: %v\n%s", err, out)
	}
	if err := fsutil.ChownTree(cfgDir, e.worker.UID, e.worker.GID); err != nil {
		t.Fatal(err)
	}
	// A DOCKER_CONFIG whose credential store is the attacker's helper.
	credDir := filepath.Join(dir, "credcfg")
	mkdir(credDir, e.worker)
	write(filepath.Join(credDir, "config.json"), `{"credsStore":"dwevil"}`+"\n", 0o644)
	// ssh reads the config of the passwd home, so it goes there; ssh insists on the modes.
	sshDir := filepath.Join(e.worker.Home, ".ssh")
	if err := os.Mkdir(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(sshDir, "config"), "Host dwevil\n\tProxyCommand "+filepath.Join(dir, "bin", "evil-proxycommand")+"\n"+
		"\tStrictHostKeyChecking no\n\tUserKnownHostsFile /dev/null\n", 0o600)
	if err := fsutil.ChownTree(sshDir, e.worker.UID, e.worker.GID); err != nil {
		t.Fatal(err)
	}

	if err := fsutil.CopyFile(e.d.CLI, filepath.Join(dir, "bin", "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsutil.CopyFile(e.d.CLI, filepath.Join(dir, "bin", "dockr"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// evilScript is a program the CLI might run on the attacker's behalf: it records that it ran,
// with its groups, then asks dockerd to create an exec instance through a symlink to the
// socket, a path the connect gate does not know. "sh -p" keeps the effective group a setgid
// client passes on (dash would otherwise drop it, as a compiled program would not).
func (e *env) evilScript(name string) string {
	mark := filepath.Join(e.dir, "marks", name)
	return "#!/bin/sh -p\n" +
		"id > " + mark + "\n" +
		"exec curl -sS --max-time 5 --unix-socket " + e.linkSocket() + " -X POST -H 'Content-Type: application/json' " +
		`-d '{"Cmd":["true"]}' http://docker/containers/ctr/exec >> ` + mark + " 2>&1\n"
}

// linkSocket is a symlink to the socket in the fixtures.
func (e *env) linkSocket() string { return filepath.Join(e.dir, "link.sock") }

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

// writeConfig writes a config that supervises user and trusts client, and returns its path.
func (e *env) writeConfig(t *testing.T, name, user, client string) string {
	path := filepath.Join(e.dir, name)
	cfg := daemon.Config{Users: []string{user}, Sockets: []string{e.d.Socket}, Clients: []string{client},
		PluginDirs: []string{filepath.Join(e.dir, "plugins")}, Access: e.access,
		EventsSocket: filepath.Join(e.dir, "events.sock"), EventsGroup: "root"}
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs argv (argv[0] as given, the program at path) as u with a timeout.
func run(t *testing.T, u *sysuser.User, env []string, stdin io.Reader, path string, argv ...string) sysuser.Result {
	t.Helper()
	return attack.Run(t, u, env, stdin, path, argv...)
}

// dockerAs runs the docker CLI as u against the private dockerd: the trusted client for the
// worker, the distribution's binary for everyone else.
func (e *env) dockerAs(t *testing.T, u *sysuser.User, args ...string) sysuser.Result {
	t.Helper()
	cli := e.d.CLI
	if u == e.worker {
		cli = e.cli
	}
	return run(t, u, []string{"DOCKER_HOST=" + e.d.Host}, nil, cli, append([]string{"docker"}, args...)...)
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
	e.quietEvents(t, what, since)
}

// quietEvents checks that dockerd logged no blocked operation since since.
func (e *env) quietEvents(t *testing.T, what string, since time.Time) {
	t.Helper()
	events, err := e.d.Events(context.Background(), since, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, ev := range events {
		if attack.IsBlockedAction(ev.Action) {
			ran = append(ran, ev.String())
		}
	}
	if len(ran) > 0 {
		t.Errorf("%s: dockerd ran %d blocked operations, first: %q", what, len(ran), ran[:min(len(ran), 8)])
	}
}

func (e *env) testBlocked(t *testing.T) {
	rows := corpus.Read(t)
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
	// Row "--config evilcfg evil" would run the attacker's plugin had the CLI not died.
	if out, err := os.ReadFile(filepath.Join(e.dir, "marks", "plugin")); err == nil {
		t.Errorf("the attacker's CLI plugin ran during the blocked commands: %s", out)
		_ = os.Remove(filepath.Join(e.dir, "marks", "plugin"))
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
			if !slices.ContainsFunc(events, func(ev daemon.Event) bool { return e.isKill(ev, argv) }) {
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
	if bad := e.watch.BadLines(); len(bad) > 0 {
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
func (e *env) isKill(ev daemon.Event, argv []string) bool {
	explained := ev.Command != "" || (ev.Rule == "unknown" && ev.Reason != "")
	return ev.Kind == "exec" && ev.Verdict == "block" && ev.Action == "killed" &&
		ev.Rule != "" && explained && ev.IsUID(e.worker.UID) && slices.Equal(ev.Argv, argv)
}

// testStop: the daemon exits on SIGTERM and leaves its pinned programs enforcing, so a restart
// has no gap (DESIGN.md §5); `dockwatch unload` then removes every program.
func (e *env) testStop(t *testing.T) {
	if len(e.watch.progs) == 0 {
		t.Fatal("found no BPF programs of the running dockwatch to check")
	}
	if err := e.watch.Stop(); err != nil {
		t.Error(err)
	}
	if res := e.dockerAs(t, e.worker, "exec", "ctr", "true"); !res.Killed() {
		t.Errorf("after the daemon stopped, docker exec was not killed: %v", res)
	}
	if err := e.watch.unload(); err != nil {
		t.Fatal(err)
	}
	// The kernel frees tracing programs after an RCU grace period, so a closed program can
	// stay listed for a moment.
	var left []daemon.Prog
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
		t.Errorf("BPF programs still loaded after dockwatch stopped and unloaded: %v", left)
	}
}

// hop is the path of u's setuid-root copy of setuidhop.
func (e *env) hop(u *sysuser.User) string {
	return filepath.Join(e.dir, "bin", "setuidhop-"+u.Name)
}

// installSetID copies src to dst as root:gid with mode (which carries the set-ID bits).
func installSetID(t *testing.T, src, dst string, gid int, mode os.FileMode) {
	t.Helper()
	if err := fsutil.InstallSetID(src, dst, gid, mode); err != nil {
		t.Fatal(err)
	}
}

func errString(err error, prefix string) string {
	if err == nil {
		return ""
	}
	return prefix + err.Error()
}

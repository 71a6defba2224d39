// Package setgid runs every attack of the README's threat-model table against Debian's real
// dockerd with dockwatch in fallback mode, once with setgid access (the supervised user is not
// in the socket's group and runs a setgid copy of the CLI) and once with group access, and
// fails when an outcome differs from the table's fallback columns (threats_test.go).
//
// It needs root, dockerd and a kernel that loads the programs, and skips (saying why) without
// them.
package setgid

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/loader"
	"github.com/dockwatch/dockwatch/internal/testutil/attack"
	"github.com/dockwatch/dockwatch/internal/testutil/daemon"
	"github.com/dockwatch/dockwatch/internal/testutil/dockerd"
	"github.com/dockwatch/dockwatch/internal/testutil/fsutil"
	"github.com/dockwatch/dockwatch/internal/testutil/gobuild"
	"github.com/dockwatch/dockwatch/internal/testutil/sysuser"
)

type fixture struct {
	d         *dockerd.Daemon
	group     *sysuser.Group
	dir       string
	bin       string // dockwatch
	attackBin string // internal/testutil/attack's program
}

// scenario is one access mode with its own supervised user and running dockwatch.
type scenario struct {
	*fixture
	access string
	worker *sysuser.User
	cli    string // the trusted CLI the worker runs
	home   string // worker-owned scratch dir: marks and per-user fixtures
	watch  *daemon.Daemon
}

func TestThreatModel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root (euid %d)", os.Geteuid())
	}
	if _, err := loader.MakePlan(loader.ProbeFeatures(), "group"); err != nil {
		t.Skipf("this kernel cannot run the fallback programs: %v", err)
	}
	f := &fixture{}
	f.group = sysuser.NewGroup(t)
	f.d = dockerd.Start(t, dockerd.Options{Group: f.group.Name})
	f.setUp(t)
	f.d.MustDocker(t, "run", "-d", "--name", "ctr", dockerd.Image, "sleep", "3600")

	for _, access := range []string{"setgid", "group"} {
		t.Run(access, func(t *testing.T) {
			s := f.scenario(t, access)
			if access == "setgid" {
				t.Run("allowed", s.testAllowed)
			}
			for _, th := range threats {
				t.Run(th.id, func(t *testing.T) { s.runThreat(t, th) })
			}
			if err := s.watch.Stop(); err != nil {
				t.Error(err)
			}
		})
	}
}

func (f *fixture) setUp(t *testing.T) {
	dir, err := os.MkdirTemp("", "dwsg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove fixtures: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.dir = dir
	for _, sub := range []string{"bin", "plugins"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(f.d.Socket, f.link()); err != nil {
		t.Fatal(err)
	}
	// Users cannot hard-link a socket they do not own (fs.protected_hardlinks); root makes
	// the link, as an operator's leftover might be.
	if err := os.Link(f.d.Socket, f.hardLink()); err != nil {
		t.Fatalf("hard-link the socket: %v", err)
	}
	f.bin = gobuild.Dockwatch(t, filepath.Join(dir, "bin"))
	f.attackBin = filepath.Join(dir, "bin", "attack")
	gobuild.Build(t, "internal/testutil/attack/cmd/attack", f.attackBin)
	if err := fsutil.CopyFile(f.d.CLI, filepath.Join(dir, "bin", "docker-copy"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) link() string     { return filepath.Join(f.dir, "link.sock") }
func (f *fixture) hardLink() string { return filepath.Join(f.dir, "hard.sock") }

// scenario creates the worker, its fixtures and the setgid client, and starts dockwatch.
func (f *fixture) scenario(t *testing.T, access string) *scenario {
	s := &scenario{fixture: f, access: access, cli: f.d.CLI}
	if access == "setgid" {
		s.worker = sysuser.NewUser(t)
		s.cli = filepath.Join(f.dir, "bin", "docker-sg")
		// What `dockwatch install-client` does (cmd/dockwatch tests it on its own).
		if err := fsutil.InstallSetID(f.d.CLI, s.cli, f.group.GID, 0o755|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(s.cli) })
	} else {
		s.worker = sysuser.NewUser(t, f.group)
	}
	s.home = filepath.Join(f.dir, access)
	for _, d := range []string{"", "marks", "sshbin", "credbin", "credcfg", "evilcfg/cli-plugins"} {
		mkdirOwned(t, filepath.Join(s.home, d), s.worker)
	}
	plugins := filepath.Join(s.worker.Home, ".docker", "cli-plugins")
	mkdirOwned(t, filepath.Join(s.worker.Home, ".docker"), s.worker)
	mkdirOwned(t, plugins, s.worker)
	s.writeEvil(t, filepath.Join(plugins, "docker-compose"), "plugin-home")
	s.writeEvil(t, filepath.Join(s.home, "evilcfg", "cli-plugins", "docker-compose"), "plugin-config")
	s.writeEvil(t, filepath.Join(s.home, "credbin", "docker-credential-dwevil"), "credhelper")
	s.writeEvil(t, filepath.Join(s.home, "sshbin", "ssh"), "ssh")
	writeFile(t, filepath.Join(s.home, "credcfg", "config.json"), `{"credsStore":"dwevil"}`+"\n", 0o644, s.worker)

	cfg := filepath.Join(s.home, "dockwatch.toml")
	writeFile(t, cfg, daemon.Config{Users: []string{s.worker.Name}, Sockets: []string{f.d.Socket}, Clients: []string{s.cli},
		PluginDirs: []string{filepath.Join(f.dir, "plugins")}, Access: access,
		EventsSocket: filepath.Join(s.home, "events.sock"), EventsGroup: "root"}.TOML(), 0o644, nil)
	// Pins of our own, removed at exit and again at clean-up: enforcement must not outlive
	// the test.
	s.watch = daemon.StartTest(t, daemon.Options{Bin: f.bin, Config: cfg, ReadyFile: filepath.Join(s.home, "ready"),
		PinDir: daemon.PinDir(t, f.bin), Args: []string{"--unload-on-exit"}})
	return s
}

// writeEvil writes a program the CLI can be made to run: it leaves a mark, then tries the
// socket through the symlink (the path gate does not know that path).
func (s *scenario) writeEvil(t *testing.T, path, mark string) {
	t.Helper()
	script := "#!/bin/sh\nid > " + s.mark(mark) + "\n" +
		"exec curl -sS --max-time 5 --unix-socket " + s.link() + " -X POST -H 'Content-Type: application/json' " +
		`-d '{"Cmd":["true"]}' http://docker/containers/ctr/exec >> ` + s.mark(mark) + " 2>&1\n"
	writeFile(t, path, script, 0o755, s.worker)
}

func (s *scenario) mark(name string) string { return filepath.Join(s.home, "marks", name) }

// testAllowed: the everyday commands work through the setgid copy.
func (s *scenario) testAllowed(t *testing.T) {
	for _, args := range [][]string{
		{"ps", "-a"}, {"images"}, {"inspect", "ctr"}, {"logs", "ctr"},
		{"run", "--rm", dockerd.Image, "true"},
		{"run", "-d", "--name", "dwsgallowed", dockerd.Image, "sleep", "300"},
		{"stop", "-t", "1", "dwsgallowed"}, {"start", "dwsgallowed"}, {"stop", "-t", "1", "dwsgallowed"},
		{"rm", "dwsgallowed"},
	} {
		res := s.run(t, nil, nil, s.cli, append([]string{"docker"}, args...)...)
		if res.ExitCode != 0 || res.Signaled || res.TimedOut {
			t.Errorf("docker %s through the setgid copy: %v", strings.Join(args, " "), res)
		}
	}
	// The distribution's CLI, run by the worker, holds no group and reaches nothing.
	res := s.run(t, nil, nil, s.d.CLI, "docker", "ps")
	if res.ExitCode == 0 {
		t.Errorf("the unprivileged CLI reached dockerd: %v", res)
	}
}

func (s *scenario) run(t *testing.T, env []string, stdin io.Reader, path string, argv ...string) sysuser.Result {
	t.Helper()
	return attack.Run(t, s.worker, append([]string{"DOCKER_HOST=" + s.d.Host}, env...), stdin, path, argv...)
}

// attempt is what one run of an attack did.
type attempt struct {
	res     sysuser.Result
	stolen  bool   // ptrace/pidfd_getfd: got hold of the CLI
	ranMark string // an inner program's mark: it ran
}

// runThreat runs th's attack, decides refused or through from dockerd's own record (and, for
// the attacks on a running CLI, from whether the attacker got hold of it), and compares.
func (s *scenario) runThreat(t *testing.T, th threat) {
	want := expected(th.cell(s.access))
	tries := 1
	if want == race {
		tries = 20
	}
	got := refused
	for i := 0; i < tries && got == refused; i++ {
		mark, since := s.d.LogOffset(), time.Now()
		a := s.attack(t, th.id)
		if a.res.TimedOut {
			t.Errorf("%s hung: %v", th.id, a.res)
		}
		reached := s.reached(t, mark, since)
		switch {
		case len(reached) > 0:
			t.Logf("attempt %d: dockerd recorded %q", i+1, reached)
			got = through
		case a.stolen:
			t.Logf("attempt %d: got hold of the CLI: %v", i+1, a.res)
			got = through
		case a.ranMark != "" && s.access == "setgid":
			t.Logf("attempt %d: the untrusted program ran with the socket's group: %s", i+1, a.ranMark)
			got = through
		default:
			t.Logf("attempt %d: %v", i+1, a.res)
		}
	}
	switch {
	case want == race:
		t.Logf("%s: %s in %d attempts (a residual race: either is consistent with the table)", th.id, got, tries)
	case got != want:
		t.Errorf("%s with %s access in fallback mode: observed %q, the README table says %q", th.id, s.access, got, th.cell(s.access))
	}
	if p := s.innerPath(th.id); p != "" && s.access == "setgid" && got == refused {
		s.reportedSetgidExec(t, th.id, p)
	}
}

// innerPath is the program the CLI is made to run in an inner attack, "" for the others.
func (s *scenario) innerPath(id string) string {
	return map[string]string{
		"plugin-home":   filepath.Join(s.worker.Home, ".docker", "cli-plugins", "docker-compose"),
		"plugin-config": filepath.Join(s.home, "evilcfg", "cli-plugins", "docker-compose"),
		"credhelper":    filepath.Join(s.home, "credbin", "docker-credential-dwevil"),
		"ssh":           filepath.Join(s.home, "sshbin", "ssh"),
	}[id]
}

// reached returns dockerd's record of forbidden operations and exec requests since then.
func (s *scenario) reached(t *testing.T, mark int64, since time.Time) []string {
	t.Helper()
	var out []string
	calls, err := s.d.APICalls(mark)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if strings.Contains(c, "/exec") {
			out = append(out, c)
		}
	}
	events, err := s.d.Events(context.Background(), since, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if attack.IsBlockedAction(ev.Action) {
			out = append(out, ev.String())
		}
	}
	return out
}

func (s *scenario) attack(t *testing.T, id string) attempt {
	sock := s.d.Socket
	var a attempt
	inner := func(mark string, env []string, argv ...string) {
		os.Remove(s.mark(mark))
		a.res = s.run(t, env, nil, s.cli, argv...)
		if b, err := os.ReadFile(s.mark(mark)); err == nil {
			a.ranMark = strings.TrimSpace(string(b))
			t.Logf("the %s ran: %s", mark, a.ranMark)
		}
	}
	switch id {
	case "curl":
		a.res = s.run(t, nil, nil, "/usr/bin/curl", attack.Curl(sock)...)
	case "python":
		a.res = s.run(t, nil, nil, "/usr/bin/python3", "python3", "-c", attack.Python, sock, attack.ExecRequest())
	case "nc":
		a.res = s.run(t, nil, strings.NewReader(attack.ExecRequest()), "/usr/bin/nc", "nc", "-N", "-w", "5", "-U", sock)
	case "symlink":
		a.res = s.run(t, nil, nil, "/usr/bin/curl", attack.Curl(s.link())...)
	case "hardlink":
		a.res = s.run(t, nil, nil, "/usr/bin/curl", attack.Curl(s.hardLink())...)
	case "proc-root":
		a.res = s.run(t, nil, nil, "/usr/bin/curl", attack.Curl("/proc/self/root"+sock)...)
	case "userns-bind":
		target := s.mark("bind.sock")
		script := "touch " + target + " && mount --bind " + sock + " " + target + " && exec " + strings.Join(attack.ShellQuote(attack.Curl(target)), " ")
		a.res = s.run(t, nil, nil, "/usr/bin/unshare", "unshare", "-Urm", "/bin/sh", "-c", script)
		if strings.Contains(string(a.res.Stderr), "unshare failed") || strings.Contains(string(a.res.Stderr), "Operation not permitted") {
			t.Skipf("no unprivileged user namespaces here: %v", a.res)
		}
	case "iouring":
		a.res = s.run(t, nil, nil, s.attackBin, "attack", "iouring-connect", sock)
	case "iouring-symlink":
		a.res = s.run(t, nil, nil, s.attackBin, "attack", "iouring-connect", s.link())
	case "thread-race":
		a.res = s.run(t, nil, nil, s.attackBin, "attack", "race", s.link())
	case "memfd-copy":
		a.res = s.run(t, nil, nil, s.attackBin, "attack", "memfd", s.cli, "docker", "exec", "ctr", "true")
	case "plain-copy":
		a.res = s.run(t, nil, nil, filepath.Join(s.dir, "bin", "docker-copy"), "docker", "exec", "ctr", "true")
	case "plugin-home":
		inner("plugin-home", nil, "docker", "compose", "ps")
	case "plugin-config":
		inner("plugin-config", nil, "docker", "--config", filepath.Join(s.home, "evilcfg"), "compose", "ps")
	case "credhelper":
		inner("credhelper", []string{"DOCKER_CONFIG=" + filepath.Join(s.home, "credcfg"),
			"PATH=" + filepath.Join(s.home, "credbin") + ":/usr/local/bin:/usr/bin:/bin"},
			"docker", "pull", "127.0.0.1:1/dwevil:latest")
	case "ssh":
		inner("ssh", []string{"DOCKER_HOST=ssh://dwevil",
			"PATH=" + filepath.Join(s.home, "sshbin") + ":/usr/local/bin:/usr/bin:/bin"}, "docker", "ps")
	case "ptrace", "pidfd-getfd":
		a = s.stealFromCLI(t, id)
	default:
		t.Fatalf("no attack for %s", id)
	}
	return a
}

// stealFromCLI starts `docker events` as the worker (allowed, connected, long-running) and
// tries to take it over: ptrace, or copying its socket with pidfd_getfd.
func (s *scenario) stealFromCLI(t *testing.T, id string) attempt {
	pid, fd, stop := attack.StartClient(t, s.worker, s.cli, s.d.Host)
	defer stop()
	var a attempt
	if id == "ptrace" {
		a.res = s.run(t, nil, nil, s.attackBin, "attack", "ptrace", strconv.Itoa(pid))
	} else {
		a.res = s.run(t, nil, nil, s.attackBin, "attack", "pidfd-getfd", strconv.Itoa(pid), strconv.Itoa(fd))
	}
	switch {
	case a.res.ExitCode == 0:
		a.stolen = true
	case a.res.ExitCode != 3:
		t.Fatalf("%s: the attack program failed: %v", id, a.res)
	}
	return a
}

// reportedSetgidExec checks that dockwatch reported the kill of the inner program, naming it
// and its parent (the setgid CLI).
func (s *scenario) reportedSetgidExec(t *testing.T, id, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, ev := range s.watch.Events() {
			if ev.Rule == "setgid-untrusted-exec" && ev.Action == "killed" && ev.IsUID(s.worker.UID) &&
				strings.Contains(ev.Reason, path) && strings.Contains(ev.Reason, s.cli) {
				t.Logf("dockwatch: %s", ev.Reason)
				return
			}
		}
	}
	t.Errorf("%s: dockwatch reported no setgid-untrusted-exec kill naming %s and %s", id, path, s.cli)
}

func mkdirOwned(t *testing.T, p string, owner *sysuser.User) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, owner.UID, owner.GID); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, body string, mode os.FileMode, owner *sysuser.User) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if owner != nil {
		if err := os.Chown(p, owner.UID, owner.GID); err != nil {
			t.Fatal(err)
		}
	}
}

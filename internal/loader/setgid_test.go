package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dockwatch/dockwatch/internal/policy"
	"github.com/dockwatch/dockwatch/internal/testutil/sysuser"
)

const testGID = 64125 // the socket's throwaway group; no group entry needed

// setgidEnv turns the test socket into a root:testGID 0660 socket and installs a copy of the
// test binary as the setgid client (root:testGID 2755), as install-client would.
func setgidEnv(t *testing.T) (*testEnv, Options) {
	t.Helper()
	env := newTestEnv(t)
	if err := os.Chown(env.sock, 0, testGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(env.sock, 0o660); err != nil {
		t.Fatal(err)
	}
	client := env.helperCopy(t, "docker-sg")
	installSetgid(t, client, testGID)
	opts := env.options()
	opts.Access = "setgid"
	opts.Clients = []string{client}
	return env, opts
}

func installSetgid(t *testing.T, path string, gid int) {
	t.Helper()
	if err := os.Chown(path, 0, gid); err != nil {
		t.Fatal(err)
	}
	// chmod after chown: chown clears the set-group-ID bit.
	if err := os.Chmod(path, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
}

// TestSetgidExec checks the exec hook's setgid rule against the kernel: a supervised process
// that got the socket's group from the setgid client may exec the clients and the helpers
// only; anything else dies before it runs and is reported with the file name.
func TestSetgidExec(t *testing.T) {
	requireEnforcement(t)
	env, opts := setgidEnv(t)
	tables, err := policy.Compile(policy.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	opts.Tables = tables
	untrusted := env.helperCopy(t, "curl")
	helper := env.helperCopy(t, "docker-credential-x")
	opts.Helpers = []string{helper}
	client := opts.Clients[0]
	// The path gate (cgroup/connect_unix) denies the socket's own path with EPERM before the
	// kernel looks at permissions; a symlink gets past it and shows the kernel's own check.
	link := filepath.Join(env.dir, "l.sock")
	if err := os.Symlink(env.sock, link); err != nil {
		t.Fatal(err)
	}

	e := loadOrFail(t, opts)
	if e.Setgid == nil || len(e.Setgid.Groups) != 1 || e.Setgid.Groups[0] != testGID || len(e.Setgid.Helpers) != 1 {
		t.Fatalf("Setgid = %+v, want group %d and one helper", e.Setgid, testGID)
	}
	for _, a := range e.Attached() {
		if strings.Contains(a, "syscalls") {
			t.Errorf("setgid access attached %s; it needs no syscall tracepoint", a)
		}
	}
	events := collectEvents(t, e)

	t.Run("kernel permission check", func(t *testing.T) {
		// The supervised uid is neither the socket's owner nor in its group: plain programs
		// get EACCES from the kernel before any BPF runs.
		r := run(t, testUID, untrusted, []string{"curl"}, "connect:"+link)
		if strings.TrimSpace(r.out) != "EACCES" {
			t.Fatalf("untrusted connect by symlink: %v, want EACCES", r)
		}
		r = run(t, testUID, untrusted, []string{"curl"}, "connect:"+env.sock)
		if strings.TrimSpace(r.out) != "EPERM" {
			t.Fatalf("untrusted connect: %v, want EPERM from the path gate", r)
		}
	})
	t.Run("setgid client connects", func(t *testing.T) {
		r := run(t, testUID, client, []string{"docker", "ps"}, "connect:"+env.sock)
		if strings.TrimSpace(r.out) != "ok" {
			t.Fatalf("setgid docker ps: %v, want ok", r)
		}
	})
	t.Run("blocked argv killed", func(t *testing.T) {
		r := run(t, testUID, client, []string{"docker", "exec", "c", "sh"}, "connect:"+env.sock)
		if !r.killed() || r.out != "" {
			t.Fatalf("setgid docker exec: %v, want SIGKILL and no output", r)
		}
	})
	t.Run("untrusted exec killed", func(t *testing.T) {
		// The allowed client execs an untrusted binary, which would inherit the group.
		r := runEnv(t, testUID, client, []string{"docker", "ps"},
			[]string{"DW_HELPER=exec:" + untrusted + ":curl", "DW_NEXT=connect:" + env.sock})
		if !r.killed() || r.out != "" {
			t.Fatalf("untrusted exec from the setgid client: %v, want SIGKILL and no output", r)
		}
		ev := events.wait(t, "setgid exec event", func(ev *dockwatchEvent) bool {
			return ev.Kind == 1 && ev.Uid == testUID && ev.Flags&32 != 0
		})
		if ev.Action != 1 || pathOf(&ev) != untrusted || ev.Bin != 0xff {
			t.Errorf("event %+v (path %q), want killed, path %s", ev, pathOf(&ev), untrusted)
		}
	})
	t.Run("helper keeps the group", func(t *testing.T) {
		// A file without the set-ID bits leaves the gids alone at exec: the helper holds the
		// socket's group (the kernel lets it through the symlink only with it), and it is
		// allowed to run. Its own verdict is NOT_CLIENT, so the path gate still refuses it.
		r := runEnv(t, testUID, client, []string{"docker", "ps"},
			[]string{"DW_HELPER=exec:" + helper + ":docker-credential-x", "DW_NEXT=connect:" + link})
		if strings.TrimSpace(r.out) != "ok" {
			t.Fatalf("helper exec from the setgid client, connect by symlink: %v, want ok", r)
		}
		r = runEnv(t, testUID, client, []string{"docker", "ps"},
			[]string{"DW_HELPER=exec:" + helper + ":docker-credential-x", "DW_NEXT=connect:" + env.sock})
		if strings.TrimSpace(r.out) != "EPERM" {
			t.Fatalf("helper exec from the setgid client, connect: %v, want EPERM", r)
		}
	})
	t.Run("client execs a client", func(t *testing.T) {
		r := runEnv(t, testUID, client, []string{"docker", "ps"},
			[]string{"DW_HELPER=exec:" + client + ":docker:images", "DW_NEXT=connect:" + env.sock})
		if strings.TrimSpace(r.out) != "ok" {
			t.Fatalf("client exec from the setgid client: %v, want ok", r)
		}
	})
	t.Run("without the group nothing changes", func(t *testing.T) {
		// An untrusted exec by a supervised process that does not hold the group runs (and is
		// refused by the kernel at connect).
		r := runEnv(t, testUID, helper, []string{"x"},
			[]string{"DW_HELPER=exec:" + untrusted + ":curl", "DW_NEXT=connect:" + link})
		if strings.TrimSpace(r.out) != "EACCES" {
			t.Fatalf("untrusted exec without the group: %v, want EACCES", r)
		}
	})
	t.Run("unsupervised uid untouched", func(t *testing.T) {
		r := runEnv(t, testUID+1, client, []string{"docker", "ps"},
			[]string{"DW_HELPER=exec:" + untrusted + ":curl", "DW_NEXT=connect:" + env.sock})
		if strings.TrimSpace(r.out) != "ok" {
			t.Fatalf("untrusted exec from the setgid client by an unsupervised uid: %v, want ok", r)
		}
	})
}

// TestCheckSetgid checks the start-up refusals of setgid access, message by message.
func TestCheckSetgid(t *testing.T) {
	sysuser.SkipIfNotRoot(t)
	group := sysuser.NewGroup(t)
	other := sysuser.NewGroup(t)
	member := sysuser.NewUser(t, group)
	outsider := sysuser.NewUser(t)
	env := newTestEnv(t)
	if err := os.Chown(env.sock, 0, group.GID); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(env.dir, "docker-good")
	copyFile(t, "/bin/true", good)
	installSetgid(t, good, group.GID)
	plain := filepath.Join(env.dir, "docker-plain")
	copyFile(t, "/bin/true", plain)
	wrong := filepath.Join(env.dir, "docker-wrong")
	copyFile(t, "/bin/true", wrong)
	installSetgid(t, wrong, other.GID)
	userOwned := filepath.Join(env.dir, "docker-user")
	copyFile(t, "/bin/true", userOwned)
	installSetgid(t, userOwned, group.GID)
	if err := os.Chown(userOwned, outsider.UID, group.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(userOwned, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}

	opts := func(uid int, client string, helpers ...string) Options {
		return Options{UIDs: []uint32{uint32(uid)}, Access: "setgid", Clients: []string{client},
			Sockets: []string{env.sock}, Helpers: helpers}
	}
	check := func(o Options) error {
		clients, err := ResolveClients(o.Clients, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = CheckSetgid(o, clients)
		return err
	}
	g := fmt.Sprintf("group %q (gid %d)", group.Name, group.GID)
	for _, c := range []struct {
		name string
		opts Options
		want string
	}{
		{"member", opts(member.UID, good),
			fmt.Sprintf(`setgid access: supervised user %q (uid %d) is a member of %s, which owns socket %s: remove it from the group (gpasswd -d %s %s) or use access = "group"`,
				member.Name, member.UID, g, env.sock, member.Name, group.Name)},
		{"not setgid", opts(outsider.UID, plain),
			fmt.Sprintf(`setgid access: client %s is not set-group-ID (mode 0755): install it with "dockwatch install-client --group %s" or "install -o root -g %s -m 2755"`,
				plain, group.Name, group.Name)},
		{"wrong group", opts(outsider.UID, wrong),
			fmt.Sprintf(`setgid access: client %s is set-group-ID to group %q (gid %d), not to %s that owns socket %s: install it with "dockwatch install-client --group %s" or "install -o root -g %s -m 2755"`,
				wrong, other.Name, other.GID, g, env.sock, group.Name, group.Name)},
		{"not root's", opts(outsider.UID, userOwned),
			fmt.Sprintf(`setgid access: client %s is owned by uid %d, not root: its owner could change it`, userOwned, outsider.UID)},
		{"missing helper", opts(outsider.UID, good, filepath.Join(env.dir, "nope")),
			fmt.Sprintf(`setgid access: helper %s: no such file or directory`, filepath.Join(env.dir, "nope"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := check(c.opts)
			if err == nil || err.Error() != c.want {
				t.Errorf("error:\n got %v\nwant %s", err, c.want)
			}
		})
	}
	t.Run("launcher", func(t *testing.T) {
		// NixOS: a setgid wrapper program (a helper) execs a client that is not setgid.
		launcher := filepath.Join(env.dir, "docker-launcher")
		copyFile(t, "/bin/true", launcher)
		installSetgid(t, launcher, group.GID)
		if err := check(opts(outsider.UID, plain, launcher)); err != nil {
			t.Errorf("plain client behind a setgid launcher: %v", err)
		}
		wrongLauncher := filepath.Join(env.dir, "docker-launcher-wrong")
		copyFile(t, "/bin/true", wrongLauncher)
		installSetgid(t, wrongLauncher, other.GID)
		want := fmt.Sprintf(`setgid access: client %s is not set-group-ID (mode 0755): install it with "dockwatch install-client --group %s" or "install -o root -g %s -m 2755"`,
			plain, group.Name, group.Name)
		if err := check(opts(outsider.UID, plain, wrongLauncher)); err == nil || err.Error() != want {
			t.Errorf("launcher of another group:\n got %v\nwant %s", err, want)
		}
	})
	t.Run("good", func(t *testing.T) {
		o := opts(outsider.UID, good)
		clients, err := ResolveClients(o.Clients, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		sg, err := CheckSetgid(o, clients)
		if err != nil || sg == nil || len(sg.Groups) != 1 || sg.Groups[0] != uint32(group.GID) {
			t.Errorf("CheckSetgid = %+v, %v; want group %d", sg, err, group.GID)
		}
		o.Access = "group"
		if sg, err := CheckSetgid(o, clients); sg != nil || err != nil {
			t.Errorf("group access: CheckSetgid = %+v, %v; want nil, nil", sg, err)
		}
	})
}

// TestGroupFallbackWarning: group access without the BPF LSM warns (log and status show the
// enforcer's warnings) and says how to switch; setgid access does not.
func TestGroupFallbackWarning(t *testing.T) {
	f := requireEnforcement(t)
	want := `access = "group" without the BPF LSM: the connect gate is path based and has races ` +
		`(io_uring through a symlink, a thread that writes while another connects, ptrace and pidfd_getfd of a running CLI); ` +
		`set [docker] access = "setgid", take the supervised users out of the socket's group and install the CLI with ` +
		`"dockwatch install-client" to close them`
	env, setgidOpts := setgidEnv(t)
	e := loadOrFail(t, env.options())
	has := slices.Contains(e.Warnings, want)
	if has == f.LSM {
		t.Errorf("group access, bpf lsm active %v: warnings %q; want the path-gate warning only without the LSM", f.LSM, e.Warnings)
	}
	e.Close()
	e = loadOrFail(t, setgidOpts)
	if slices.Contains(e.Warnings, want) {
		t.Errorf("setgid access warns about group access: %q", e.Warnings)
	}
}

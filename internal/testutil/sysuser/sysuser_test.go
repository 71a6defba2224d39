package sysuser

import (
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUserLifecycle(t *testing.T) {
	g := NewGroup(t)
	u := NewUser(t, g)

	res, err := u.Run(10*time.Second, nil, "id")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("id as %s: %v", u.Name, res)
	}
	out := string(res.Stdout)
	if !strings.Contains(out, "uid="+strconv.Itoa(u.UID)+"(") {
		t.Errorf("id output %q lacks uid %d", out, u.UID)
	}
	if !strings.Contains(out, strconv.Itoa(g.GID)+"("+g.Name+")") {
		t.Errorf("id output %q lacks supplementary group %s", out, g.Name)
	}

	u.RemoveFromGroup(t, g)
	res, err = u.Run(10*time.Second, nil, "id", "-G")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(" "+string(res.Stdout)+" ", " "+strconv.Itoa(g.GID)+" ") {
		t.Errorf("after removal, id -G = %q still lists %d", res.Stdout, g.GID)
	}
	u.AddToGroup(t, g)
	groups, err := u.Groups()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, id := range groups {
		found = found || int(id) == g.GID
	}
	if !found {
		t.Errorf("after AddToGroup, groups %v lack %d", groups, g.GID)
	}
}

func TestResultKinds(t *testing.T) {
	u := NewUser(t)

	res, err := u.Run(10*time.Second, nil, "/bin/sh", "-c", "exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Signaled || res.TimedOut {
		t.Errorf("exit 3: got %v", res)
	}

	res, err = u.Run(10*time.Second, nil, "/bin/sh", "-c", "kill -KILL $$")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Killed() {
		t.Errorf("self SIGKILL: got %v", res)
	}

	res, err = u.Run(300*time.Millisecond, nil, "/bin/sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.Killed() {
		t.Errorf("timeout: got %v (timed out %v, signal %v)", res, res.TimedOut, res.Signal)
	}
	if res.Signal != syscall.SIGKILL {
		t.Errorf("timeout should end the command by SIGKILL, got %v", res)
	}
}

func TestCleanupRemovesAccounts(t *testing.T) {
	SkipIfNotRoot(t)
	var name, group string
	t.Run("create", func(t *testing.T) {
		g := NewGroup(t)
		u := NewUser(t, g)
		name, group = u.Name, g.Name
		// A process left running must not stop the user's deletion.
		cmd, err := u.Command(t.Context(), nil, "/bin/sleep", "60")
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Wait() })
	})
	if _, err := user.Lookup(name); err == nil {
		t.Errorf("user %s still exists after cleanup", name)
	}
	if _, err := user.LookupGroup(group); err == nil {
		t.Errorf("group %s still exists after cleanup", group)
	}
}

func TestOwnerPid(t *testing.T) {
	for name, want := range map[string]int{
		"dwtest4242u0a1b2c": 4242,
		"dwtest1g00ff00":    1,
	} {
		if got, ok := ownerPid(name); !ok || got != want {
			t.Errorf("ownerPid(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	for _, name := range []string{"dwtest", "dwtestabc", "dwtest123", "root", "ai-worker"} {
		if got, ok := ownerPid(name); ok {
			t.Errorf("ownerPid(%q) = %d, want no pid", name, got)
		}
	}
}

package dockerd

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/testutil/sysuser"
)

func TestDaemon(t *testing.T) {
	sysuser.SkipIfNotRoot(t)
	SkipUnlessAvailable(t)
	var dir string
	t.Run("run", func(t *testing.T) {
		g := sysuser.NewGroup(t)
		d := Start(t, Options{Group: g.Name})
		dir = d.Dir

		fi, err := os.Stat(d.Socket)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o660 {
			t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
		}

		start := time.Now()
		mark := d.LogOffset()
		out := d.MustDocker(t, "run", "--rm", Image, "echo", "hello")
		if strings.TrimSpace(out) != "hello" {
			t.Errorf("run echo: got %q", out)
		}
		d.MustDocker(t, "run", "-d", "--name", "ctr", Image, "sleep", "3600")
		d.MustDocker(t, "exec", "ctr", "true")
		calls, err := d.APICalls(mark)
		if err != nil {
			t.Fatal(err)
		}
		if !containsPrefix(calls, "POST /v1.") || !containsSuffix(calls, "/containers/ctr/exec") {
			t.Errorf("API calls lack the exec create: %q", calls)
		}
		events, err := d.Events(context.Background(), start, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range events {
			actions = append(actions, e.Action)
		}
		joined := strings.Join(actions, ",")
		for _, want := range []string{"create", "start", "exec_create: true", "exec_start: true"} {
			if !strings.Contains(joined, want) {
				t.Errorf("events %q lack %q", joined, want)
			}
		}
		// A running container must not keep the cleanup from finishing.
	})
	if dir == "" {
		t.Fatal("the daemon subtest did not start dockerd")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after cleanup: %v", dir, err)
	}
	if pids := pidsMentioning(dir); len(pids) > 0 {
		t.Errorf("processes %v still run after cleanup", pids)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), dir) {
		t.Errorf("mounts under %s remain after cleanup", dir)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/a\040b`: "/mnt/a b",
		`/plain`:      "/plain",
		`/x\134y`:     `/x\y`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func containsPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func containsSuffix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasSuffix(s, p) {
			return true
		}
	}
	return false
}

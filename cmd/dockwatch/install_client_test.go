package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestInstallClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("install-client needs root (euid %d)", os.Geteuid())
	}
	const gid = 64126 // a throwaway group number; no group entry needed
	dest := filepath.Join(t.TempDir(), "libexec")
	code, stdout, stderr := runCLI(t, "install-client", "--group", fmt.Sprint(gid), "--dest", dest, "--source", "/bin/true")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	dst := filepath.Join(dest, "docker")
	for _, want := range []string{
		fmt.Sprintf("installed %s (root:%d, mode 2755)", dst, gid),
		fmt.Sprintf("clients = [%q]", dst),
		`access = "setgid"`,
		"export PATH=" + dest + ":$PATH",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode() != 0o755|os.ModeSetgid || sys.Uid != 0 || sys.Gid != gid {
		t.Errorf("installed %v uid %d gid %d, want -rwxr-sr-x root:%d", st.Mode(), sys.Uid, sys.Gid, gid)
	}
	want, _ := os.ReadFile("/bin/true")
	if got, err := os.ReadFile(dst); err != nil || string(got) != string(want) {
		t.Errorf("the copy differs from the source (%v)", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dest, ".docker.tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// Installing again replaces the copy in place.
	if code, _, stderr := runCLI(t, "install-client", "--group", fmt.Sprint(gid), "--dest", dest, "--source", "/bin/true"); code != 0 {
		t.Errorf("second install: exit %d, stderr %q", code, stderr)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"writable dest", []string{"--group", "64126", "--dest", open, "--source", "/bin/true"},
			fmt.Sprintf("dockwatch install-client: dest %s: %s is writable by group or others (mode 0777)\n", open, open)},
		{"relative dest", []string{"--group", "64126", "--dest", "rel", "--source", "/bin/true"},
			"dockwatch install-client: dest \"rel\": not an absolute path\n"},
		{"gid 0", []string{"--group", "0", "--dest", dest, "--source", "/bin/true"},
			"dockwatch install-client: group \"0\": refusing to install a client set-group-ID to gid 0\n"},
		{"unknown group", []string{"--group", "dwnosuchgroup", "--dest", dest, "--source", "/bin/true"},
			"dockwatch install-client: group \"dwnosuchgroup\": group: unknown group dwnosuchgroup\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append([]string{"install-client"}, c.args...)...)
			if code != 1 || stderr != c.want {
				t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, c.want)
			}
		})
	}
	if code, _, _ := runCLI(t, "install-client", "extra"); code != exitUsage {
		t.Errorf("an argument: exit %d, want %d", code, exitUsage)
	}
}

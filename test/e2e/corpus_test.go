package e2e

import (
	"strings"
	"testing"
)

// demoRewriter maps the corpus's /srv/demo fixtures and fake -H socket onto this run's.
type demoRewriter struct {
	demoDir string // replaces /srv/demo
	host    string // replaces unix:///srv/demo/fake.sock
}

func (d demoRewriter) rewrite(s string) string {
	s = strings.ReplaceAll(s, "unix:///srv/demo/fake.sock", d.host)
	return strings.ReplaceAll(s, "/srv/demo", d.demoDir)
}

func (d demoRewriter) argv(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = d.rewrite(a)
	}
	return out
}

func TestDemoRewriter(t *testing.T) {
	rw := demoRewriter{demoDir: "/t/demo", host: "unix:///t/d.sock"}
	got := rw.argv([]string{"docker", "-Hunix:///srv/demo/fake.sock", "save", "-o", "/srv/demo/out/a.tar"})
	want := []string{"docker", "-Hunix:///t/d.sock", "save", "-o", "/t/demo/out/a.tar"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("rewrite = %q, want %q", got, want)
	}
}

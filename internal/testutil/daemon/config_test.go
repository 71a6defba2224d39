package daemon

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/dockwatch/dockwatch/internal/config"
)

// TestConfigTOML: dockwatch's own parser reads the rendered config back.
func TestConfigTOML(t *testing.T) {
	c := Config{Users: []string{"worker", "64123"}, Sockets: []string{"/a/d.sock"}, Clients: []string{"/a/docker", "/a/b \"c\""},
		PluginDirs: []string{"/a/plugins"}, Access: "setgid", EventsSocket: "/a/ev.sock", EventsGroup: "root", History: 42,
		Extra: "[policy]\nundecided = \"allow\"\n"}
	path := filepath.Join(t.TempDir(), "dockwatch.toml")
	if err := c.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.TOML())
	}
	if !slices.Equal(got.Supervise.Users, c.Users) || !slices.Equal(got.Docker.Clients, c.Clients) ||
		!slices.Equal(got.Docker.Sockets, c.Sockets) || !slices.Equal(got.Docker.PluginDirs, c.PluginDirs) ||
		got.Docker.Access != "setgid" || got.Events.Socket != c.EventsSocket || got.Events.Group != "root" ||
		got.Events.History != 42 || got.Metrics.Listen != "" || got.Policy.Undecided != "allow" ||
		!got.Supervise.FollowChildren || got.Policy.Mode != "enforce" {
		t.Errorf("read back %+v from\n%s", got, c.TOML())
	}
}

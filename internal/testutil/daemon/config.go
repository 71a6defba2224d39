package daemon

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Config is what the tests and the bench set in a dockwatch config; the keys it leaves out
// keep dockwatch's defaults (follow_children on, policy mode enforce, the seed block list).
type Config struct {
	Users        []string // supervise.users
	Sockets      []string // docker.sockets
	Clients      []string // docker.clients
	PluginDirs   []string // docker.plugin_dirs
	Access       string   // docker.access: group or setgid
	EventsSocket string   // events.socket
	EventsGroup  string   // events.group
	History      int      // events.history; 0 keeps the default
	Metrics      string   // metrics.listen; "" turns the endpoint off
	Extra        string   // more TOML, appended: other tables ([policy], [alerts], ...)
}

// TOML renders the config.
func (c Config) TOML() string {
	list := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[supervise]\nusers = %s\n\n", list(c.Users))
	fmt.Fprintf(&b, "[docker]\nsockets = %s\nclients = %s\nplugin_dirs = %s\naccess = %q\n\n",
		list(c.Sockets), list(c.Clients), list(c.PluginDirs), c.Access)
	fmt.Fprintf(&b, "[events]\nsocket = %q\ngroup = %q\n", c.EventsSocket, c.EventsGroup)
	if c.History != 0 {
		fmt.Fprintf(&b, "history = %d\n", c.History)
	}
	fmt.Fprintf(&b, "\n[metrics]\nlisten = %q\n", c.Metrics)
	if c.Extra != "" {
		b.WriteString("\n" + c.Extra)
	}
	return b.String()
}

// Write writes the config to path.
func (c Config) Write(path string) error {
	if err := os.WriteFile(path, []byte(c.TOML()), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// Package config reads and validates the dockwatch TOML configuration.
//
// Parse is strict: an unknown key, a value of the wrong type, a bad enum value, a relative path
// or a duplicate entry is an error that names the key and its line. Parse returns either a
// complete, valid Config or an error, never a half-applied one.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// Config is the whole dockwatch configuration. The toml tags name the keys; TOML encodes it
// (Parse does not use the tags: it checks every key itself).
type Config struct {
	Supervise struct {
		Users          []string `toml:"users"`           // names or numeric UIDs
		FollowChildren bool     `toml:"follow_children"` // descendants stay supervised
	} `toml:"supervise"`
	Docker struct {
		Sockets    []string `toml:"sockets"`     // protected unix sockets (the /run <-> /var/run alias is implied)
		Clients    []string `toml:"clients"`     // trusted docker CLI binaries
		PluginDirs []string `toml:"plugin_dirs"` // where the trusted compose/buildx plugins live
		Access     string   `toml:"access"`      // group | setgid
		Helpers    []string `toml:"helpers"`     // other binaries a setgid client may exec
	} `toml:"docker"`
	Policy struct {
		Mode           string   `toml:"mode"`            // enforce | audit
		Block          []string `toml:"block"`           // operations or command paths to block
		Escape         string   `toml:"escape"`          // block | audit | off
		Unknown        string   `toml:"unknown"`         // block | audit
		Undecided      string   `toml:"undecided"`       // block | allow (argv over the in-kernel limits)
		SensitivePaths []string `toml:"sensitive_paths"` // host paths a bind mount may not overlap
		Plugins        []string `toml:"plugins"`         // trusted CLI plugins (compose, buildx)
	} `toml:"policy"`
	Events struct {
		Socket  string `toml:"socket"`  // unix socket of the event stream
		Group   string `toml:"group"`   // the group besides root that may read the stream
		History int    `toml:"history"` // events kept for `dockwatch events`
	} `toml:"events"`
	Alerts struct {
		WebhookURL        string   `toml:"webhook_url"`         // "" disables webhooks
		WebhookSecretFile string   `toml:"webhook_secret_file"` // file holding the HMAC secret
		DedupWindow       Duration `toml:"dedup_window"`        // one alert per (user, command) per window
	} `toml:"alerts"`
	Metrics struct {
		Listen string `toml:"listen"` // host:port of the Prometheus endpoint, "" disables it
	} `toml:"metrics"`
	Kernel struct {
		// Mode is the enforcement mode: auto (lsm when the BPF LSM works, else the
		// tracepoint/cgroup fallback), lsm (refuse to start without it) or tracepoint.
		Mode string `toml:"mode"`
	} `toml:"kernel"`
}

// Duration is a time.Duration written in TOML as a Go duration string ("5m", "30s").
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// TOML encodes the config as a TOML document that Parse reads back to an equal Config.
func (c *Config) TOML() string {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		// Every field has a TOML type; an error here is a bug in this package.
		panic(fmt.Sprintf("config: encode: %v", err))
	}
	return b.String()
}

// Enum values of the string keys.
var (
	accessValues    = []string{"group", "setgid"}
	modeValues      = []string{"enforce", "audit"}
	escapeValues    = []string{"block", "audit", "off"}
	unknownValues   = []string{"block", "audit"}
	undecidedValues = []string{"block", "allow"}
	pluginValues    = []string{"compose", "buildx"}
	kernelModes     = []string{"auto", "lsm", "tracepoint"}
)

// Default returns the configuration used for every key the file does not set (DESIGN.md §4).
func Default() *Config {
	c := &Config{}
	c.Supervise.Users = []string{"ai-worker"}
	c.Supervise.FollowChildren = true
	c.Docker.Sockets = []string{"/run/docker.sock"}
	c.Docker.Clients = []string{"/usr/bin/docker"}
	c.Docker.PluginDirs = []string{"/usr/libexec/docker/cli-plugins"}
	c.Docker.Access = "group"
	c.Docker.Helpers = []string{}
	c.Policy.Mode = "enforce"
	c.Policy.Block = append([]string(nil), policy.SeedBlock...)
	c.Policy.Escape = "block"
	c.Policy.Unknown = "block"
	c.Policy.Undecided = "block"
	c.Policy.SensitivePaths = append([]string(nil), policy.DefaultSensitivePaths...)
	c.Policy.Plugins = []string{"compose", "buildx"}
	c.Events.Socket = "/run/dockwatch/events.sock"
	c.Events.Group = "dockwatch"
	c.Events.History = 10000
	c.Alerts.DedupWindow = Duration(5 * time.Minute)
	c.Metrics.Listen = "127.0.0.1:9477"
	c.Kernel.Mode = "auto"
	return c
}

// Load reads and parses the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, filepath.Base(path))
}

// Error is a config error at a key. Line is 0 when the position is not known.
type Error struct {
	File string
	Line int
	Key  string // dotted key, e.g. "policy.escape"; "" for syntax errors
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrInvalid is wrapped by every error Parse returns for bad input (errors.Is(err, ErrInvalid)).
var ErrInvalid = errors.New("invalid config")

func (e *Error) Unwrap() error { return ErrInvalid }

// ClassifierPolicy is the part of the config that shapes classification, in the form
// policy.Compile takes. The protected sockets, with their /run <-> /var/run aliases, are added to
// the sensitive paths so that no bind mount can reach them.
//
// It is not called Policy because the [policy] section already owns that name.
func (c *Config) ClassifierPolicy() policy.Policy {
	p := policy.Policy{
		Mode:    actionOf(c.Policy.Mode),
		Block:   append([]string(nil), c.Policy.Block...),
		Escape:  actionOf(c.Policy.Escape),
		Unknown: actionOf(c.Policy.Unknown),
		Plugins: append([]string(nil), c.Policy.Plugins...),
	}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			p.SensitivePaths = append(p.SensitivePaths, s)
		}
	}
	for _, s := range c.Policy.SensitivePaths {
		add(s)
	}
	for _, s := range c.Docker.Sockets {
		for _, a := range SocketAliases(s) {
			add(a)
		}
	}
	return p
}

// Compile compiles the classifier tables of this config.
func (c *Config) Compile() (*policy.Tables, error) {
	t, err := policy.Compile(c.ClassifierPolicy())
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	return t, nil
}

// SocketAliases returns path and, when it lies under /run or /var/run, its spelling under the
// other one (on systemd hosts /var/run is a symlink to /run).
func SocketAliases(path string) []string {
	switch {
	case strings.HasPrefix(path, "/run/"):
		return []string{path, "/var" + path}
	case strings.HasPrefix(path, "/var/run/"):
		return []string{path, strings.TrimPrefix(path, "/var")}
	}
	return []string{path}
}

// actionOf maps the enum strings of mode, escape and unknown to a policy action.
func actionOf(s string) policy.Action {
	switch s {
	case "enforce", "block":
		return policy.ActionBlock
	case "audit":
		return policy.ActionAudit
	}
	return policy.ActionOff
}

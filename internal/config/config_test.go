package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/policy"
)

func TestDefault(t *testing.T) {
	c := Default()
	want := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	want("supervise.users", c.Supervise.Users, []string{"ai-worker"})
	want("supervise.follow_children", c.Supervise.FollowChildren, true)
	want("docker.sockets", c.Docker.Sockets, []string{"/run/docker.sock"})
	want("docker.clients", c.Docker.Clients, []string{"/usr/bin/docker"})
	want("docker.plugin_dirs", c.Docker.PluginDirs, []string{"/usr/libexec/docker/cli-plugins"})
	want("docker.access", c.Docker.Access, "group")
	want("docker.helpers", c.Docker.Helpers, []string{})
	want("policy.mode", c.Policy.Mode, "enforce")
	want("policy.block", c.Policy.Block, []string{"exec", "cp", "commit", "diff", "export", "import", "load", "save", "attach", "push", "tag"})
	want("policy.escape", c.Policy.Escape, "block")
	want("policy.unknown", c.Policy.Unknown, "block")
	want("policy.undecided", c.Policy.Undecided, "block")
	want("policy.sensitive_paths", c.Policy.SensitivePaths, []string{"/etc", "/root", "/home", "/proc", "/sys", "/dev",
		"/boot", "/nix", "/var/lib/docker", "/run/docker.sock", "/var/run/docker.sock"})
	want("policy.plugins", c.Policy.Plugins, []string{"compose", "buildx"})
	want("events.socket", c.Events.Socket, "/run/dockwatch/events.sock")
	want("events.group", c.Events.Group, "dockwatch")
	want("events.history", c.Events.History, 10000)
	want("alerts.webhook_url", c.Alerts.WebhookURL, "")
	want("alerts.webhook_secret_file", c.Alerts.WebhookSecretFile, "")
	want("alerts.dedup_window", c.Alerts.DedupWindow, Duration(5*time.Minute))
	want("metrics.listen", c.Metrics.Listen, "127.0.0.1:9477")
	want("kernel.mode", c.Kernel.Mode, "auto")

	// The default config's classifier policy is the embedded default policy.
	if got, want := c.ClassifierPolicy(), policy.DefaultPolicy(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default().ClassifierPolicy() = %+v, want policy.DefaultPolicy() %+v", got, want)
	}
	// Default must not share slices between calls.
	Default().Policy.Block[0] = "changed"
	if Default().Policy.Block[0] != "exec" {
		t.Error("Default shares its block slice between calls")
	}
}

func TestParseEmptyIsDefault(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "[supervise]\n[docker]\n[policy]\n[events]\n[alerts]\n[metrics]\n[kernel]\n"} {
		c, err := Parse([]byte(src), "config.toml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("Parse(%q) = %+v, want Default()", src, c)
		}
	}
}

func TestParseFull(t *testing.T) {
	src := `
[supervise]
users = ["ai-worker", "1001"]
follow_children = false

[docker]
sockets = ["/var/run/docker.sock", "/srv/docker/api.sock"]
clients = ["/usr/bin/docker", "/opt/docker/bin/docker"]
plugin_dirs = []
access = "setgid"
helpers = ["/usr/bin/docker-credential-pass"]

[policy]
mode = "audit"
block = ["exec", "system prune"]
escape = "audit"
unknown = "audit"
undecided = "allow"
sensitive_paths = ["/etc", "/srv/secrets"]
plugins = ["compose"]

[events]
socket = "/run/dw/events.sock"
group = "wheel"
history = 0

[alerts]
webhook_url = "https://hooks.example.com/T000/B000"
webhook_secret_file = "/etc/dockwatch/webhook.secret"
dedup_window = "90s"

[metrics]
listen = "[::1]:9100"

[kernel]
mode = "lsm"
`
	c, err := Parse([]byte(src), "full.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Supervise.Users = []string{"ai-worker", "1001"}
	want.Supervise.FollowChildren = false
	want.Docker.Sockets = []string{"/var/run/docker.sock", "/srv/docker/api.sock"}
	want.Docker.Clients = []string{"/usr/bin/docker", "/opt/docker/bin/docker"}
	want.Docker.PluginDirs = []string{}
	want.Docker.Access = "setgid"
	want.Docker.Helpers = []string{"/usr/bin/docker-credential-pass"}
	want.Policy.Mode = "audit"
	want.Policy.Block = []string{"exec", "system prune"}
	want.Policy.Escape = "audit"
	want.Policy.Unknown = "audit"
	want.Policy.Undecided = "allow"
	want.Policy.SensitivePaths = []string{"/etc", "/srv/secrets"}
	want.Policy.Plugins = []string{"compose"}
	want.Events.Socket = "/run/dw/events.sock"
	want.Events.Group = "wheel"
	want.Events.History = 0
	want.Alerts.WebhookURL = "https://hooks.example.com/T000/B000"
	want.Alerts.WebhookSecretFile = "/etc/dockwatch/webhook.secret"
	want.Alerts.DedupWindow = Duration(90 * time.Second)
	want.Metrics.Listen = "[::1]:9100"
	want.Kernel.Mode = "lsm"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", c, want)
	}

	p := c.ClassifierPolicy()
	if p.Mode != policy.ActionAudit || p.Escape != policy.ActionAudit || p.Unknown != policy.ActionAudit {
		t.Errorf("actions: mode %v escape %v unknown %v, want audit for all", p.Mode, p.Escape, p.Unknown)
	}
	wantPaths := []string{"/etc", "/srv/secrets", "/var/run/docker.sock", "/run/docker.sock", "/srv/docker/api.sock"}
	if !reflect.DeepEqual(p.SensitivePaths, wantPaths) {
		t.Errorf("sensitive paths = %q, want %q (configured paths, then each socket and its alias)", p.SensitivePaths, wantPaths)
	}
	if _, err := c.Compile(); err != nil {
		t.Errorf("Compile: %v", err)
	}
}

// Dotted keys and inline tables are ordinary TOML; they must work like [section] headers.
func TestParseOtherSpellings(t *testing.T) {
	for _, src := range []string{
		"policy.escape = \"off\"\n",
		"policy = { escape = \"off\" }\n",
		"[policy]\nescape = 'off'\n",
	} {
		c, err := Parse([]byte(src), "c.toml")
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if c.Policy.Escape != "off" || c.ClassifierPolicy().Escape != policy.ActionOff {
			t.Errorf("Parse(%q): escape = %q", src, c.Policy.Escape)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"syntax", "[policy]\nmode = \n", `config.toml:2: syntax error: `},
		{"unterminated string", "[policy]\n\nmode = \"enforce\n", `config.toml:3: syntax error: `},
		{"duplicate key", "[policy]\nmode = \"audit\"\nmode = \"audit\"\n", `config.toml:3: syntax error: `},
		{"unknown section", "[supervise]\nusers = [\"a\"]\n[polcy]\nmode = \"audit\"\n",
			`config.toml:3: polcy: unknown section [polcy] (known: supervise, docker, policy, events, alerts, metrics, kernel)`},
		{"unknown top-level key", "\nfoo = 1\n", `config.toml:2: foo: unknown section [foo]`},
		{"unknown dotted section", "\n\na.b.c = 1\n", `config.toml:3: a: unknown section [a]`},
		{"unknown dotted key", "[supervise]\nusers = [\"a\"]\n\ndocker.x.y = 1\n", `config.toml:4: supervise.docker.x.y: unknown key`},
		{"unknown key", "[docker]\nsockets = [\"/run/docker.sock\"]\nsocket = \"/run/x.sock\"\n",
			`config.toml:3: docker.socket: unknown key (known in [docker]: sockets, clients, plugin_dirs, access, helpers)`},
		{"key case matters", "[supervise]\nUsers = [\"a\"]\n", `config.toml:2: supervise.Users: unknown key`},
		{"subtable", "[docker]\n[docker.extra]\nx = 1\n", `config.toml:2: docker.extra: unknown key`},
		{"section not a table", "supervise = 1\n", `config.toml:1: supervise: must be a table ([supervise]), got an integer`},
		{"array of tables", "[[policy]]\nmode = \"audit\"\n", `config.toml:1: policy: must be a table ([policy]), got an array of tables`},
		{"deep inline table", "[docker]\nsockets = [\"/run/docker.sock\"]\naccess = { a = 1 }\n",
			`config.toml:3: docker.access: must be a string, got a table`},

		{"users not array", "[supervise]\nusers = \"ai-worker\"\n", `config.toml:2: supervise.users: must be an array of strings, got a string`},
		{"users mixed", "[supervise]\nusers = [\"a\", 5]\n", `config.toml:2: supervise.users: must be an array of strings, entry 2 is an integer`},
		{"users empty", "[supervise]\nusers = []\n", `config.toml:2: supervise.users: must not be empty`},
		{"user empty", "[supervise]\nusers = [\"a\", \"\"]\n", `config.toml:2: supervise.users: entry 2: empty user name`},
		{"user bad", "[supervise]\nusers = [\"ai worker\"]\n", `config.toml:2: supervise.users: entry 1: "ai worker" is not a valid user name`},
		{"user uid overflow", "[supervise]\nusers = [\"4294967296\"]\n", `config.toml:2: supervise.users: entry 1: "4294967296" is neither a user name nor a valid numeric UID`},
		{"user root", "[supervise]\nusers = [\"root\"]\n", `config.toml:2: supervise.users: entry 1: root (UID 0) cannot be supervised`},
		{"user uid 0", "[supervise]\nusers = [\"0\"]\n", `config.toml:2: supervise.users: entry 1: root (UID 0) cannot be supervised`},
		{"user duplicate", "[supervise]\nusers = [\n  \"a\",\n  \"b\",\n  \"a\",\n]\n", `config.toml:2: supervise.users: entry 3: duplicate of entry 1 ("a")`},
		{"follow_children string", "[supervise]\nfollow_children = \"yes\"\n", `config.toml:2: supervise.follow_children: must be a boolean (true or false), got a string`},

		{"sockets relative", "[docker]\nsockets = [\"docker.sock\"]\n", `config.toml:2: docker.sockets: entry 1: "docker.sock" is not an absolute path`},
		{"sockets unclean", "[docker]\nsockets = [\"/run//docker.sock\"]\n", `config.toml:2: docker.sockets: entry 1: "/run//docker.sock" is not a clean path (use "/run/docker.sock")`},
		{"sockets dotdot", "[docker]\nsockets = [\"/run/../docker.sock\"]\n", `config.toml:2: docker.sockets: entry 1: "/run/../docker.sock" is not a clean path (use "/docker.sock")`},
		{"sockets empty", "[docker]\nsockets = []\n", `config.toml:2: docker.sockets: must not be empty`},
		{"sockets duplicate", "[docker]\nsockets = [\"/run/docker.sock\", \"/run/docker.sock\"]\n", `config.toml:2: docker.sockets: entry 2: duplicate of entry 1 ("/run/docker.sock")`},
		{"sockets alias duplicate", "[docker]\nsockets = [\"/run/docker.sock\", \"/var/run/docker.sock\"]\n",
			`config.toml:2: docker.sockets: entry 2: "/var/run/docker.sock" is entry 1 under its other name; the /run <-> /var/run alias is implied`},
		{"sockets too long", "[docker]\nsockets = [\"/" + strings.Repeat("s", 110) + "\"]\n", `is longer than 107 bytes, the limit of a unix socket path`},
		{"sockets longer than a pattern", "[docker]\nsockets = [\"/" + strings.Repeat("s", 70) + "\"]\n", `config.toml:2: docker.sockets: "/sss`},
		{"sockets root", "[docker]\nsockets = [\"/\"]\n", `config.toml:2: docker.sockets: entry 1: "/" is not a socket path`},
		{"sockets NUL", "[docker]\nsockets = [\"/run/a\\u0000b\"]\n", `config.toml:2: docker.sockets: entry 1: "/run/a\x00b" contains a NUL byte`},
		{"clients relative", "[docker]\nclients = [\"docker\"]\n", `config.toml:2: docker.clients: entry 1: "docker" is not an absolute path`},
		{"clients empty", "[docker]\nclients = []\n", `config.toml:2: docker.clients: must not be empty`},
		{"plugin_dirs relative", "[docker]\nplugin_dirs = [\"./plugins\"]\n", `config.toml:2: docker.plugin_dirs: entry 1: "./plugins" is not an absolute path`},
		{"plugin_dirs trailing slash", "[docker]\nplugin_dirs = [\"/usr/lib/docker/\"]\n", `config.toml:2: docker.plugin_dirs: entry 1: "/usr/lib/docker/" is not a clean path (use "/usr/lib/docker")`},
		{"helpers relative", "[docker]\nhelpers = [\"ssh\"]\n", `config.toml:2: docker.helpers: entry 1: "ssh" is not an absolute path`},
		{"helpers duplicate", "[docker]\nhelpers = [\"/usr/bin/ssh\", \"/usr/bin/ssh\"]\n", `config.toml:2: docker.helpers: entry 2: duplicate of entry 1 ("/usr/bin/ssh")`},
		{"access", "[docker]\naccess = \"sudo\"\n", `config.toml:2: docker.access: must be one of group, setgid, got "sudo"`},

		{"mode", "[policy]\nmode = \"enforcing\"\n", `config.toml:2: policy.mode: must be one of enforce, audit, got "enforcing"`},
		{"escape", "# comment\n\n\n\n\n[policy]\nescape = \"maybe\"\n", `config.toml:7: policy.escape: must be one of block, audit, off, got "maybe"`},
		{"escape bool", "[policy]\nescape = false\n", `config.toml:2: policy.escape: must be a string, got a boolean`},
		{"unknown off", "[policy]\nunknown = \"off\"\n", `config.toml:2: policy.unknown: must be one of block, audit, got "off"`},
		{"kernel mode", "[metrics]\n[kernel]\nmode = \"kprobe\"\n", `config.toml:3: kernel.mode: must be one of auto, lsm, tracepoint, got "kprobe"`},
		{"kernel key", "[kernel]\nlsm = true\n", `config.toml:2: kernel.lsm: unknown key (known in [kernel]: mode)`},
		{"undecided", "[policy]\nundecided = \"audit\"\n", `config.toml:2: policy.undecided: must be one of block, allow, got "audit"`},
		{"block unknown op", "[policy]\nmode = \"enforce\"\nblock = [\"exec\", \"teleport\"]\n", `config.toml:3: policy.block: `},
		{"block empty entry", "[policy]\nblock = [\"\"]\n", `config.toml:2: policy.block: entry 1: empty entry`},
		{"block spaces", "[policy]\nblock = [\" exec\"]\n", `config.toml:2: policy.block: entry 1: " exec" has stray spaces`},
		{"block duplicate", "[policy]\nblock = [\"exec\", \"exec\"]\n", `config.toml:2: policy.block: entry 2: duplicate of entry 1 ("exec")`},
		{"sensitive relative", "[policy]\nsensitive_paths = [\"etc\"]\n", `config.toml:2: policy.sensitive_paths: entry 1: "etc" is not an absolute path`},
		{"sensitive root", "[policy]\nsensitive_paths = [\"/\"]\n", `config.toml:2: policy.sensitive_paths: entry 1: "/" is always sensitive; list paths below it`},
		{"sensitive too long", "[policy]\nsensitive_paths = [\"/" + strings.Repeat("p", 64) + "\"]\n", `config.toml:2: policy.sensitive_paths: entry 1: "/ppp`},
		{"sensitive duplicate", "[policy]\nsensitive_paths = [\"/etc\", \"/etc\"]\n", `config.toml:2: policy.sensitive_paths: entry 2: duplicate of entry 1 ("/etc")`},
		{"plugins unknown", "[policy]\nplugins = [\"compose\", \"scan\"]\n", `config.toml:2: policy.plugins: entry 2: must be one of compose, buildx, got "scan"`},
		{"plugins duplicate", "[policy]\nplugins = [\"buildx\", \"buildx\"]\n", `config.toml:2: policy.plugins: entry 2: duplicate of entry 1 ("buildx")`},

		{"events socket relative", "[events]\nsocket = \"events.sock\"\n", `config.toml:2: events.socket: "events.sock" is not an absolute path`},
		{"events socket empty", "[events]\nsocket = \"\"\n", `config.toml:2: events.socket: empty path`},
		{"events group empty", "[events]\ngroup = \"\"\n", `config.toml:2: events.group: must not be empty`},
		{"events group bad", "[events]\ngroup = \"a:b\"\n", `config.toml:2: events.group: "a:b" is not a valid group name`},
		{"history negative", "[events]\nhistory = -1\n", `config.toml:2: events.history: must be between 0 and 10000000, got -1`},
		{"history float", "[events]\nhistory = 1.5\n", `config.toml:2: events.history: must be an integer, got a float`},
		{"history string", "[events]\nhistory = \"100\"\n", `config.toml:2: events.history: must be an integer, got a string`},

		{"webhook scheme", "[alerts]\nwebhook_url = \"ftp://example.com/x\"\n", `config.toml:2: alerts.webhook_url: must be an http:// or https:// URL, got "ftp://example.com/x"`},
		{"webhook no host", "[alerts]\nwebhook_url = \"https:///x\"\n", `config.toml:2: alerts.webhook_url: "https:///x" has no host`},
		{"webhook bad", "[alerts]\nwebhook_url = \"http://[::1\"\n", `config.toml:2: alerts.webhook_url: "http://[::1" is not a valid URL`},
		{"secret without url", "[alerts]\n\nwebhook_secret_file = \"/etc/dw.secret\"\n", `config.toml:3: alerts.webhook_secret_file: is set but alerts.webhook_url is empty`},
		{"secret relative", "[alerts]\nwebhook_url = \"https://x.example\"\nwebhook_secret_file = \"secret\"\n", `config.toml:3: alerts.webhook_secret_file: "secret" is not an absolute path`},
		{"dedup bad", "[alerts]\ndedup_window = \"5 minutes\"\n", `config.toml:2: alerts.dedup_window: must be a duration between 0s and 168h0m0s such as "5m", got "5 minutes"`},
		{"dedup negative", "[alerts]\ndedup_window = \"-1s\"\n", `config.toml:2: alerts.dedup_window: must be a duration between 0s and 168h0m0s`},
		{"dedup int", "[alerts]\ndedup_window = 300\n", `config.toml:2: alerts.dedup_window: must be a duration string such as "5m", got an integer`},

		{"listen no port", "[metrics]\nlisten = \"127.0.0.1\"\n", `config.toml:2: metrics.listen: must be host:port (e.g. "127.0.0.1:9477"), got "127.0.0.1"`},
		{"listen bad port", "[metrics]\nlisten = \"127.0.0.1:http\"\n", `config.toml:2: metrics.listen: port must be a number from 1 to 65535, got "http"`},
		{"listen port 0", "[metrics]\nlisten = \"127.0.0.1:0\"\n", `config.toml:2: metrics.listen: port must be a number from 1 to 65535, got "0"`},
		{"listen port big", "[metrics]\nlisten = \":65536\"\n", `config.toml:2: metrics.listen: port must be a number from 1 to 65535, got "65536"`},
		{"listen bad host", "[metrics]\nlisten = \"bad_host!:9477\"\n", `config.toml:2: metrics.listen: "bad_host!" is not an IP address or host name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src), "config.toml")
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error %q", c, tt.want)
			}
			if c != nil {
				t.Errorf("Parse returned a config with its error")
			}
			if !strings.HasPrefix(err.Error(), tt.want) && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n got %q\nwant %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *config.Error", err)
			}
			if ce.Line == 0 {
				t.Errorf("error %q has no line", err)
			}
		})
	}
}

// Every accepted value of every enum key parses.
func TestParseEnums(t *testing.T) {
	for key, values := range map[string][]string{
		"docker.access": accessValues, "policy.mode": modeValues, "policy.escape": escapeValues,
		"policy.unknown": unknownValues, "policy.undecided": undecidedValues, "kernel.mode": kernelModes,
	} {
		for _, v := range values {
			src := key + " = \"" + v + "\"\n"
			if _, err := Parse([]byte(src), "c.toml"); err != nil {
				t.Errorf("Parse(%q): %v", src, err)
			}
		}
	}
}

func TestParseAccepts(t *testing.T) {
	for _, src := range []string{
		"[supervise]\nusers = [\"ai-worker\", \"svc_agent$\", \"1000\", \"Agent.2\"]\n",
		"[docker]\nplugin_dirs = []\nhelpers = []\n",
		"[policy]\nblock = []\n",
		"[policy]\nsensitive_paths = []\n",
		"[alerts]\nwebhook_url = \"http://127.0.0.1:8080/hook\"\n",
		"[alerts]\ndedup_window = \"0s\"\n",
		"[metrics]\nlisten = \"\"\n",
		"[metrics]\nlisten = \":9477\"\n",
		"[metrics]\nlisten = \"localhost:9477\"\n",
		"[events]\ngroup = \"998\"\nhistory = 10000000\n",
	} {
		if _, err := Parse([]byte(src), "c.toml"); err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
	}
}

// Trusting no plugin is a valid choice: compose and buildx are then unknown commands.
func TestParseNoPlugins(t *testing.T) {
	for _, src := range []string{"[policy]\nplugins = []\n", "[policy]\nplugins = [\"compose\"]\n", "[policy]\nplugins = [\"buildx\"]\n"} {
		if _, err := Parse([]byte(src), "c.toml"); err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
	}
}

func TestParseFilenameInErrors(t *testing.T) {
	_, err := Parse([]byte("[policy]\nmode = 1\n"), "")
	if err == nil || !strings.HasPrefix(err.Error(), "config:2: policy.mode:") {
		t.Errorf("error = %v, want a \"config:2: policy.mode:\" prefix", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "dockwatch.toml")
	if err := os.WriteFile(good, []byte("[policy]\nmode = \"audit\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.Mode != "audit" {
		t.Errorf("mode = %q, want audit", c.Policy.Mode)
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[policy]\nmode = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), "bad.toml:2: policy.mode:") {
		t.Errorf("Load(bad) error = %v, want it to start with bad.toml:2: policy.mode:", err)
	}

	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want os.ErrNotExist", err)
	}
}

// The example config shipped in examples/ must parse.
func TestExampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "dockwatch.toml")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("example config: %v", err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("examples/dockwatch.toml differs from the defaults:\n got %+v\nwant %+v", c, Default())
	}
}

func TestSocketAliases(t *testing.T) {
	for in, want := range map[string][]string{
		"/run/docker.sock":     {"/run/docker.sock", "/var/run/docker.sock"},
		"/var/run/docker.sock": {"/var/run/docker.sock", "/run/docker.sock"},
		"/srv/docker.sock":     {"/srv/docker.sock"},
		"/run":                 {"/run"},
	} {
		if got := SocketAliases(in); !slices.Equal(got, want) {
			t.Errorf("SocketAliases(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: Parse never panics, and a config it accepts re-validates to the same Config when
// encoded back to TOML.
func FuzzParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("[policy]\nmode = \"audit\"\nblock = [\"exec\", \"system prune\"]\n"))
	f.Add([]byte("[supervise]\nusers = [\"a\", \"1000\"]\nfollow_children = false\n[docker]\naccess = \"setgid\"\n"))
	f.Add([]byte("policy = { escape = \"off\" }\n[metrics]\nlisten = \":1\"\n[alerts]\ndedup_window = \"1h\"\n"))
	f.Add([]byte("[[policy]]\n[docker.x]\ny = 1\n"))
	if b, err := os.ReadFile(filepath.Join("..", "..", "examples", "dockwatch.toml")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config with error %v", err)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T (%v) is not a *config.Error", err, err)
			}
			return
		}
		again, err := Parse([]byte(c.TOML()), "again.toml")
		if err != nil {
			t.Fatalf("re-parse of the encoded config failed: %v\n%s", err, c.TOML())
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("re-parse differs:\n got %+v\nwant %+v", again, c)
		}
	})
}

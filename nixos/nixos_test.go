// Package nixos_test evaluates module.nix and package.nix with Debian's nix-instantiate against
// the stub lib in tests/stub (no nixpkgs, no store: --store dummy://) and checks the systemd unit,
// the generated TOML config and the assertion messages.
package nixos_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/dockwatch/dockwatch/internal/config"
)

// nixEval evaluates `let c = <eval.nix with modules>; in <expr>` and returns the JSON result, or
// the evaluation error text.
func nixEval(t *testing.T, modules, expr string) (json.RawMessage, string) {
	t.Helper()
	bin, err := exec.LookPath("nix-instantiate")
	if err != nil {
		t.Skipf("nix-instantiate is not installed (Debian: apt-get install nix-bin): %v", err)
	}
	evalFile, err := filepath.Abs(filepath.Join("tests", "eval.nix"))
	if err != nil {
		t.Fatal(err)
	}
	full := "let c = import " + evalFile + " { modules = [ " + modules + " ]; }; in " + expr
	home := t.TempDir()
	cmd := exec.Command(bin, "--eval", "--strict", "--json", "--store", "dummy://", "-E", full)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"NIX_PATH=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if stderr.Len() == 0 {
			t.Fatalf("nix-instantiate: %v", err)
		}
		return nil, stderr.String()
	}
	return stdout.Bytes(), ""
}

// mustEval is nixEval for expressions that must evaluate; it decodes the result into out.
func mustEval(t *testing.T, modules, expr string, out any) {
	t.Helper()
	raw, errText := nixEval(t, modules, expr)
	if errText != "" {
		t.Fatalf("evaluation failed:\n%s", errText)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
}

type unit struct {
	WantedBy      []string          `json:"wantedBy"`
	Before        []string          `json:"before"`
	After         []string          `json:"after"`
	ServiceConfig map[string]any    `json:"serviceConfig"`
	Environment   map[string]string `json:"environment"`
}

type system struct {
	Unit        *unit                     `json:"unit"`
	Wrappers    map[string]map[string]any `json:"wrappers"`
	KernelParam []string                  `json:"kernelParams"`
	BPFFS       map[string]any            `json:"bpffs"`
	Groups      map[string]any            `json:"groups"`
	Users       map[string]map[string]any `json:"users"`
	Warnings    []string                  `json:"warnings"`
	TOML        map[string]any            `json:"toml"`
	Package     string                    `json:"package"`
	Docker      string                    `json:"docker"`
	Compose     string                    `json:"compose"`
	ShellText   string                    `json:"shellText"`
}

const systemExpr = `{
  unit = c.systemd.services.dockwatch or null;
  wrappers = c.security.wrappers;
  kernelParams = c.boot.kernelParams;
  bpffs = c.fileSystems."/sys/fs/bpf" or null;
  groups = c.users.groups;
  users = c.users.users;
  warnings = c.warnings;
  toml = c.environment.etc."dockwatch/dockwatch.toml".source.value or null;
  package = "${c.services.dockwatch.package}";
  docker = "${c._pkgs.docker}";
  compose = "${c._pkgs.docker-compose}";
  shellText = c.users.users.ai-worker.shell.text or "";
}`

func evalSystem(t *testing.T, modules string) system {
	t.Helper()
	var s system
	mustEval(t, modules, systemExpr, &s)
	return s
}

// parseGenerated writes the generated settings as TOML and parses them with the daemon's own
// config parser, so a key the daemon does not know fails here.
func parseGenerated(t *testing.T, settings map[string]any) *config.Config {
	t.Helper()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(integers(settings)); err != nil {
		t.Fatalf("encode generated settings: %v", err)
	}
	cfg, err := config.Parse(buf.Bytes(), "dockwatch.toml")
	if err != nil {
		t.Fatalf("the daemon rejects the generated config: %v\n%s", err, buf.String())
	}
	return cfg
}

// integers turns the float64s of decoded JSON back into the integers Nix had (TOML tells them
// apart; JSON does not).
func integers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = integers(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = integers(e)
		}
		return out
	case float64:
		if x == math.Trunc(x) {
			return int64(x)
		}
	}
	return v
}

func strs(t *testing.T, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not a list", v)
	}
	out := make([]string, len(list))
	for i, x := range list {
		out[i], _ = x.(string)
	}
	return out
}

func TestEnabledDefaults(t *testing.T) {
	s := evalSystem(t, `{ services.dockwatch.enable = true; }`)
	if s.Unit == nil {
		t.Fatal("no systemd.services.dockwatch")
	}
	sc := s.Unit.ServiceConfig
	wantScalars := map[string]any{
		"Type":                    "notify",
		"ExecStart":               s.Package + "/bin/dockwatch run --config /etc/dockwatch/dockwatch.toml",
		"Restart":                 "on-failure",
		"ProtectSystem":           "strict",
		"ProtectHome":             true,
		"PrivateTmp":              true,
		"NoNewPrivileges":         true,
		"SystemCallArchitectures": "native",
		"LockPersonality":         true,
		"MemoryDenyWriteExecute":  true,
		"RuntimeDirectory":        "dockwatch",
		"User":                    "root",
	}
	for k, want := range wantScalars {
		if sc[k] != want {
			t.Errorf("serviceConfig.%s = %v, want %v", k, sc[k], want)
		}
	}
	if r, _ := sc["ExecReload"].(string); !strings.HasSuffix(r, "/bin/kill -HUP $MAINPID") {
		t.Errorf("ExecReload = %q, want kill -HUP $MAINPID", r)
	}
	if w, _ := sc["WatchdogSec"].(string); w == "" {
		t.Errorf("WatchdogSec not set")
	}
	ambient, bounding := strs(t, sc["AmbientCapabilities"]), strs(t, sc["CapabilityBoundingSet"])
	if !slices.Equal(ambient, bounding) {
		t.Errorf("ambient %v and bounding %v capabilities differ", ambient, bounding)
	}
	for _, c := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN", "CAP_KILL",
		"CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_CHOWN"} {
		if !slices.Contains(ambient, c) {
			t.Errorf("capabilities %v lack %s", ambient, c)
		}
	}
	if slices.Contains(ambient, "CAP_SYS_ADMIN") {
		t.Errorf("capabilities %v include CAP_SYS_ADMIN by default", ambient)
	}
	if got := strs(t, sc["RestrictAddressFamilies"]); !slices.Equal(got, []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}) {
		t.Errorf("RestrictAddressFamilies = %v", got)
	}
	filter := strs(t, sc["SystemCallFilter"])
	for _, want := range []string{"@system-service", "bpf", "perf_event_open"} {
		if !slices.Contains(filter, want) {
			t.Errorf("SystemCallFilter %v lacks %s", filter, want)
		}
	}
	if got := strs(t, sc["ReadWritePaths"]); !slices.Contains(got, "/sys/fs/bpf") {
		t.Errorf("ReadWritePaths = %v, want /sys/fs/bpf", got)
	}
	if !slices.Contains(s.Unit.WantedBy, "multi-user.target") || !slices.Contains(s.Unit.Before, "systemd-user-sessions.service") {
		t.Errorf("wantedBy %v before %v", s.Unit.WantedBy, s.Unit.Before)
	}

	// Kernel and filesystem.
	var lsm string
	for _, p := range s.KernelParam {
		if v, ok := strings.CutPrefix(p, "lsm="); ok {
			lsm = v
		}
	}
	if !slices.Contains(strings.Split(lsm, ","), "bpf") {
		t.Errorf("kernelParams %v: no lsm= list with bpf", s.KernelParam)
	}
	if s.BPFFS["fsType"] != "bpf" {
		t.Errorf("fileSystems./sys/fs/bpf = %v", s.BPFFS)
	}
	if _, ok := s.Groups["dockwatch"]; !ok {
		t.Errorf("users.groups lacks the events group: %v", s.Groups)
	}

	// setgid access is the default: a setgid-docker wrapper of the real CLI.
	w := s.Wrappers["docker"]
	if w["setgid"] != true || w["owner"] != "root" || w["group"] != "docker" || w["source"] != s.Docker+"/bin/docker" {
		t.Errorf("security.wrappers.docker = %v", w)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings: %v", s.Warnings)
	}

	// The generated TOML has exactly the DESIGN §4 keys, and the daemon accepts it.
	docker, _ := s.TOML["docker"].(map[string]any)
	if got := strs(t, docker["clients"]); !slices.Equal(got, []string{s.Docker + "/bin/docker", s.Docker + "/libexec/docker/docker"}) {
		t.Errorf("docker.clients = %v, want the CLI chain behind the wrapper", got)
	}
	if got := strs(t, docker["helpers"]); !slices.Equal(got, []string{"/run/wrappers/bin/docker"}) {
		t.Errorf("docker.helpers = %v, want the setgid wrapper (the launcher)", got)
	}
	cfg := parseGenerated(t, s.TOML)
	if cfg.Docker.Access != "setgid" || !slices.Equal(cfg.Supervise.Users, []string{"ai-worker"}) || !cfg.Supervise.FollowChildren {
		t.Errorf("parsed config: access %q users %v follow %v", cfg.Docker.Access, cfg.Supervise.Users, cfg.Supervise.FollowChildren)
	}
	if cfg.Policy.Mode != "enforce" || cfg.Policy.Escape != "block" || cfg.Policy.Unknown != "block" || cfg.Policy.Undecided != "block" {
		t.Errorf("parsed policy: %+v", cfg.Policy)
	}
	if !slices.Equal(cfg.Policy.Block, []string{"exec", "cp", "commit", "diff", "export", "import", "load", "save", "attach", "push", "tag"}) {
		t.Errorf("policy.block = %v", cfg.Policy.Block)
	}
	if !slices.Equal(cfg.Docker.PluginDirs, []string{s.Compose + "/libexec/docker/cli-plugins"}) {
		t.Errorf("plugin_dirs = %v", cfg.Docker.PluginDirs)
	}
	if cfg.Events.Socket != "/run/dockwatch/events.sock" || cfg.Events.Group != "dockwatch" || cfg.Metrics.Listen != "127.0.0.1:9477" {
		t.Errorf("events %+v metrics %+v", cfg.Events, cfg.Metrics)
	}
	if cfg.Kernel.Mode != "auto" {
		t.Errorf("kernel.mode = %q, want auto", cfg.Kernel.Mode)
	}
	wantSections := []string{"alerts", "docker", "events", "kernel", "metrics", "policy", "supervise"}
	var sections []string
	for k := range s.TOML {
		sections = append(sections, k)
	}
	slices.Sort(sections)
	if !slices.Equal(sections, wantSections) {
		t.Errorf("TOML sections %v, want %v", sections, wantSections)
	}
}

func TestDisabled(t *testing.T) {
	for name, modules := range map[string]string{
		"default":  ``,
		"disabled": `{ services.dockwatch.enable = false; services.dockwatch.users = [ ]; }`,
	} {
		t.Run(name, func(t *testing.T) {
			s := evalSystem(t, modules)
			if s.Unit != nil || len(s.Wrappers) != 0 || len(s.KernelParam) != 0 || s.BPFFS != nil || s.TOML != nil || len(s.Groups) != 0 {
				t.Errorf("disabled module defines something: %+v", s)
			}
		})
	}
}

func TestGroupAccessAndOptions(t *testing.T) {
	s := evalSystem(t, `{
	  services.dockwatch = {
	    enable = true;
	    access = "group";
	    users = [ "ai-worker" "1001" ];
	    helpers = [ "/run/current-system/sw/bin/docker-credential-pass" ];
	    extraCapabilities = [ "CAP_SYS_ADMIN" ];
	    bpfLsm = false;
	    policy = { mode = "audit"; escape = "audit"; unknown = "audit"; undecided = "allow";
	               block = [ "exec" "system prune" ]; plugins = [ "compose" ]; };
	    events = { group = "auditors"; history = 50; };
	    alerts = { webhookUrl = "https://hooks.example/dockwatch"; webhookSecretFile = "/run/keys/dockwatch-webhook"; };
	    metrics.listen = null;
	    kernel.mode = "tracepoint";
	    extraConfig.alerts.dedup_window = "10m";
	  };
	  users.users.ai-worker = { isNormalUser = true; extraGroups = [ "docker" ]; };
	}`)
	if len(s.Wrappers) != 0 {
		t.Errorf("group access installs wrappers: %v", s.Wrappers)
	}
	if len(s.KernelParam) != 0 {
		t.Errorf("bpfLsm = false still sets %v", s.KernelParam)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], `access = "group"`) {
		t.Errorf("warnings = %v, want one about group access", s.Warnings)
	}
	if _, ok := s.Groups["auditors"]; !ok {
		t.Errorf("events group not created: %v", s.Groups)
	}
	if !slices.Contains(strs(t, s.Unit.ServiceConfig["CapabilityBoundingSet"]), "CAP_SYS_ADMIN") {
		t.Errorf("extraCapabilities not applied")
	}
	cfg := parseGenerated(t, s.TOML)
	if !slices.Equal(cfg.Docker.Clients, []string{s.Docker + "/bin/docker", s.Docker + "/libexec/docker/docker"}) {
		t.Errorf("clients = %v, want the CLI chain", cfg.Docker.Clients)
	}
	if !slices.Equal(cfg.Docker.Helpers, []string{"/run/current-system/sw/bin/docker-credential-pass"}) {
		t.Errorf("helpers = %v", cfg.Docker.Helpers)
	}
	if cfg.Policy.Mode != "audit" || cfg.Policy.Escape != "audit" || cfg.Policy.Unknown != "audit" || cfg.Policy.Undecided != "allow" ||
		!slices.Equal(cfg.Policy.Block, []string{"exec", "system prune"}) || !slices.Equal(cfg.Policy.Plugins, []string{"compose"}) {
		t.Errorf("policy = %+v", cfg.Policy)
	}
	if cfg.Alerts.WebhookURL != "https://hooks.example/dockwatch" || cfg.Alerts.WebhookSecretFile != "/run/keys/dockwatch-webhook" {
		t.Errorf("alerts = %+v", cfg.Alerts)
	}
	if cfg.Metrics.Listen != "" || cfg.Events.Group != "auditors" || cfg.Events.History != 50 {
		t.Errorf("metrics %+v events %+v", cfg.Metrics, cfg.Events)
	}
	if cfg.Kernel.Mode != "tracepoint" {
		t.Errorf("kernel.mode = %q, want tracepoint", cfg.Kernel.Mode)
	}
	if got := cfg.Alerts.DedupWindow.String(); got != "10m0s" {
		t.Errorf("extraConfig alerts.dedup_window = %s, want 10m0s", got)
	}
	if !slices.Equal(cfg.Supervise.Users, []string{"ai-worker", "1001"}) {
		t.Errorf("users = %v", cfg.Supervise.Users)
	}
}

// TestKernelModeLSM: mode lsm is written as [kernel] mode; without bpfLsm the module warns
// that the daemon depends on the kernel's built-in LSM list.
func TestKernelModeLSM(t *testing.T) {
	s := evalSystem(t, `{ services.dockwatch = { enable = true; kernel.mode = "lsm"; }; }`)
	if cfg := parseGenerated(t, s.TOML); cfg.Kernel.Mode != "lsm" {
		t.Errorf("kernel.mode = %q, want lsm", cfg.Kernel.Mode)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings %v, want none with bpfLsm on", s.Warnings)
	}
	s = evalSystem(t, `{ services.dockwatch = { enable = true; kernel.mode = "lsm"; bpfLsm = false; }; }`)
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "CONFIG_LSM") {
		t.Errorf("warnings %v, want one about the built-in LSM list", s.Warnings)
	}
}

func TestSandboxShell(t *testing.T) {
	s := evalSystem(t, `{
	  services.dockwatch = { enable = true; access = "group"; sandbox.enable = true; };
	  users.users.ai-worker = { isNormalUser = true; extraGroups = [ "docker" ]; };
	}`)
	shell, _ := s.Users["ai-worker"]["shell"].(string)
	if !strings.HasPrefix(shell, "/nix/store/") {
		t.Fatalf("users.users.ai-worker.shell = %v, want the sandbox wrapper", s.Users["ai-worker"]["shell"])
	}
	want := "exec " + s.Package + "/bin/dockwatch sandbox --profile agent -- "
	if !strings.Contains(s.ShellText, want) || !strings.Contains(s.ShellText, `"$@"`) || !strings.Contains(s.ShellText, "set -- -l") {
		t.Errorf("wrapper script:\n%s\nwant it to contain %q", s.ShellText, want)
	}
}

func TestPackage(t *testing.T) {
	var pkg struct {
		Pname       string   `json:"pname"`
		SubPackages []string `json:"subPackages"`
		VendorHash  string   `json:"vendorHash"`
		NativeBuild any      `json:"nativeBuildInputs"`
		DoCheck     bool     `json:"doCheck"`
	}
	mustEval(t, "", `let a = c._pkgs.callPackage ./package.nix { }; in {
	  inherit (a.goModuleArgs) pname subPackages vendorHash doCheck;
	  nativeBuildInputs = a.goModuleArgs.nativeBuildInputs or null;
	}`, &pkg)
	if pkg.Pname != "dockwatch" || !slices.Equal(pkg.SubPackages, []string{"cmd/dockwatch"}) || pkg.NativeBuild != nil {
		t.Errorf("package.nix: %+v (want pname dockwatch, subPackages [cmd/dockwatch], no clang in nativeBuildInputs)", pkg)
	}
	if !strings.HasPrefix(pkg.VendorHash, "sha256-") {
		t.Errorf("vendorHash = %q", pkg.VendorHash)
	}
}

func TestBadConfigurations(t *testing.T) {
	cases := []struct {
		name    string
		modules string
		want    []string
	}{
		{"no users", `{ services.dockwatch = { enable = true; users = [ ]; }; }`,
			[]string{"Failed assertions:", "services.dockwatch.users is empty"}},
		{"root", `{ services.dockwatch = { enable = true; users = [ "ai-worker" "root" ]; }; }`,
			[]string{"services.dockwatch.users must not contain root"}},
		{"setgid with extraGroups docker", `{ services.dockwatch.enable = true; users.users.ai-worker = { isNormalUser = true; extraGroups = [ "wheel" "docker" ]; }; }`,
			[]string{`access = "setgid" but supervised user ai-worker is in the docker group`, `or set services.dockwatch.access = "group"`}},
		{"setgid with group members", `{ services.dockwatch.enable = true; users.groups.docker.members = [ "ai-worker" ]; }`,
			[]string{"supervised user ai-worker is in the docker group"}},
		{"secret without url", `{ services.dockwatch = { enable = true; alerts.webhookSecretFile = "/run/keys/hook"; }; }`,
			[]string{"alerts.webhookSecretFile is set but alerts.webhookUrl is not"}},
		{"empty clients", `{ services.dockwatch = { enable = true; clients = [ ]; }; }`,
			[]string{"services.dockwatch.clients is empty"}},
		{"no sockets", `{ services.dockwatch = { enable = true; sockets = [ ]; }; }`,
			[]string{"services.dockwatch.sockets is empty"}},
		{"sandbox with setgid access", `{ services.dockwatch = { enable = true; sandbox.enable = true; }; users.users.ai-worker.isNormalUser = true; }`,
			[]string{`sandbox.enable needs services.dockwatch.access = "group"`, "no_new_privs"}},
		{"sandbox for undeclared user", `{ services.dockwatch = { enable = true; access = "group"; sandbox.enable = true; users = [ "ghost" ]; }; }`,
			[]string{"wraps the login shell of users.users.ghost"}},
		{"mode", `{ services.dockwatch = { enable = true; policy.mode = "block"; }; }`,
			[]string{"services.dockwatch.policy.mode' is not of type `one of \"enforce\", \"audit\"'", `"block"`}},
		{"kernel mode", `{ services.dockwatch = { enable = true; kernel.mode = "kprobe"; }; }`,
			[]string{"services.dockwatch.kernel.mode' is not of type `one of \"auto\", \"lsm\", \"tracepoint\"'"}},
		{"access", `{ services.dockwatch = { enable = true; access = "sudo"; }; }`,
			[]string{"services.dockwatch.access' is not of type `one of \"group\", \"setgid\"'"}},
		{"escape", `{ services.dockwatch = { enable = true; policy.escape = true; }; }`,
			[]string{"services.dockwatch.policy.escape' is not of type"}},
		{"plugin", `{ services.dockwatch = { enable = true; policy.plugins = [ "scan" ]; }; }`,
			[]string{"services.dockwatch.policy.plugins' is not of type `list of one of \"compose\", \"buildx\"'"}},
		{"users type", `{ services.dockwatch = { enable = true; users = "ai-worker"; }; }`,
			[]string{"services.dockwatch.users' is not of type `list of string'"}},
		{"unknown option", `{ services.dockwatch = { enable = true; sandboxx = true; }; }`,
			[]string{"The option `services.dockwatch.sandboxx' does not exist"}},
		{"several at once", `{ services.dockwatch = { enable = true; users = [ ]; alerts.webhookSecretFile = "/k"; }; }`,
			[]string{"services.dockwatch.users is empty", "alerts.webhookSecretFile is set"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, errText := nixEval(t, c.modules, systemExpr)
			if errText == "" {
				t.Fatalf("evaluation succeeded, want an error; result %s", raw)
			}
			// nix indents multi-line messages; compare on single spaces.
			flat := strings.Join(strings.Fields(errText), " ")
			for _, want := range c.want {
				if !strings.Contains(flat, strings.Join(strings.Fields(want), " ")) {
					t.Errorf("error does not contain %q:\n%s", want, errText)
				}
			}
		})
	}
}

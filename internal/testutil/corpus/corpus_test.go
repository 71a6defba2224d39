package corpus

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	rows, err := Parse("# header\n" +
		"BLOCK\tx (env: DOCKER_HOST=<unset>) (binary: /srv/demo/bin/docker-compose)\t[\"docker\", \"exec\"]\tGET /x\n" +
		"ALLOW\tplain (stdin: /dev/null)\t[\"docker\", \"ps\"]\n" +
		"BLOCK\tplugin\t[\"docker\", \"compose\", \"exec\", \"web\", \"sh\"]\texec'd: docker-compose argv=[\"docker-compose\",\"compose\",\"exec\",\"web\",\"sh\"]\n" +
		"BLOCK\tlong\t[\"docker\", \"buildx\", \"b\"]\texec'd: docker-buildx argv=[\"docker-buildx\",…]\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("got %d rows, want 4", len(rows))
	}
	if rows[0].Line != 2 || rows[0].Expected != "BLOCK" || rows[0].Endpoints != "GET /x" {
		t.Errorf("row 1: %+v", rows[0])
	}
	if v, ok := rows[0].Env["DOCKER_HOST"]; !ok || v != "<unset>" {
		t.Errorf("env = %v", rows[0].Env)
	}
	if rows[0].Binary != "/srv/demo/bin/docker-compose" || rows[0].Grammar() != "compose" {
		t.Errorf("binary %q, grammar %q", rows[0].Binary, rows[0].Grammar())
	}
	if rows[1].Stdin != "/dev/null" || rows[1].Grammar() != "docker" || rows[1].Plugin != "" {
		t.Errorf("row 2: %+v", rows[1])
	}
	if rows[2].Plugin != "compose" || !slices.Equal(rows[2].PluginArgv, []string{"docker-compose", "compose", "exec", "web", "sh"}) {
		t.Errorf("plugin %q argv %q", rows[2].Plugin, rows[2].PluginArgv)
	}
	if rows[3].Plugin != "buildx" || rows[3].PluginArgv != nil {
		t.Errorf("cut-short plugin argv: plugin %q argv %q, want buildx and none", rows[3].Plugin, rows[3].PluginArgv)
	}
	for _, bad := range []string{"BLOCK\tx\tnot json\n", "BLOCK\tx\n", "BLOCK\tx\t[]\n"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

// TestRead reads this checkout's corpus.
func TestRead(t *testing.T) {
	rows := Read(t)
	plugins := 0
	for _, r := range rows {
		if r.Expected != "BLOCK" && r.Expected != "ALLOW" && r.Expected != "ANY" {
			t.Errorf("line %d: label %q", r.Line, r.Expected)
		}
		if r.PluginArgv != nil {
			plugins++
		}
	}
	if plugins == 0 {
		t.Error("no row records the argv of a plugin the CLI ran")
	}
}

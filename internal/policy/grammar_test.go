package policy_test

import (
	"strings"
	"testing"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// Cases beyond the corpus, each a rule of docker-cli-grammar.md or DESIGN.md §3. Written as
// shell-like strings split on spaces; "·" stands for an empty argument.
func TestGrammarCases(t *testing.T) {
	tab := compileDefault(t)
	cases := []struct {
		argv, want, rule, command string
	}{
		// Root flag lexing.
		{"docker --config -D context ls", "allow", "", "context ls"},
		{"docker --config -D exec c sh", "block", "blocked-subcommand", "exec"},
		{"docker -D true ps", "block", "unknown", ""},
		{"docker -test.v exec c sh", "block", "blocked-subcommand", "exec"},
		{"docker -Dtest.x exec c sh", "block", "blocked-subcommand", "exec"},
		{"docker -H=unix:///s exec c sh", "block", "blocked-subcommand", "exec"},
		{"docker -l=debug container exec c sh", "block", "blocked-subcommand", "container exec"},
		{"docker --tls --tlscacert x exec c sh", "block", "blocked-subcommand", "exec"},
		{"docker -D=false exec c sh", "block", "blocked-subcommand", "exec"},
		{"docker -- -D ps", "block", "unknown", ""},
		{"docker --help exec c sh", "allow", "", "exec"},
		{"docker -h exec c sh", "allow", "", "exec"},
		{"docker --help=true exec c sh", "allow", "", "exec"},
		{"docker --help=maybe exec c sh", "block", "unknown", ""},
		{"docker -v", "allow", "", ""},
		{"docker", "allow", "", ""},
		{"docker --context", "block", "unknown", ""},
		// Management levels: only help flags; "--" swallows the subcommand.
		{"docker container -D exec c sh", "block", "unknown", "container"},
		{"docker container -h=0 exec c sh", "block", "blocked-subcommand", "container exec"},
		{"docker container -h exec c sh", "allow", "", "container exec"},
		{"docker image --help=FALSE load -i x", "block", "blocked-subcommand", "image load"},
		{"docker image --help=T load -i x", "allow", "", "image load"},
		{"docker container bogus", "block", "unknown", "container"},
		{"docker container", "allow", "", "container"},
		// Interspersed and not.
		{"docker exec c --help", "block", "blocked-subcommand", "exec"},
		{"docker exec --help c", "allow", "", "exec"},
		{"docker exec -h c", "allow", "", "exec"},
		{"docker cp c:/etc/passwd - --help", "allow", "", "cp"},
		{"docker cp --help=false c:/x -", "block", "blocked-subcommand", "cp"},
		{"docker logs c --help", "allow", "", "logs"},
		{"docker commit c img --help", "block", "blocked-subcommand", "commit"},
		{"docker tag --help a b", "allow", "", "tag"},
		{"docker save -o /tmp/x.tar alpine -- --help", "block", "blocked-subcommand", "save"},
		// run: -h is --hostname, and run has its own --help.
		{"docker run -h exec img", "allow", "", "run"},
		{"docker run --rm -it -h x -p 80:80 img sh", "allow", "", "run"},
		{"docker container --help run --privileged img", "block", "escape-flags", "container run"},
		{"docker run --privileged --help img", "allow", "", "run"},
		{"docker run img --privileged", "allow", "", "run"},
		{"docker run img exec", "allow", "", "run"},
		// Aliases and legacy spellings.
		{"docker container list", "allow", "", "container ls"},
		{"docker remove c", "allow", "", "rm"},
		{"docker image remove x", "allow", "", "image rm"},
		{"docker stack down s", "allow", "", "stack rm"},
		// Same word, different command.
		{"docker context export ctx", "allow", "", "context export"},
		{"docker context import ctx f", "allow", "", "context import"},
		{"docker trust key load k", "allow", "", "trust key load"},
		{"docker buildx history export x", "allow", "", "buildx history export"},
		{"docker buildx history import", "allow", "", "buildx history import"},
		// Equivalents.
		{"docker start -ai c", "block", "blocked-subcommand", "start"},
		{"docker start -i=false c", "allow", "", "start"},
		{"docker container start --interactive c", "block", "blocked-subcommand", "container start"},
		{"docker plugin push p", "block", "blocked-subcommand", "plugin push"},
		{"docker manifest push m", "block", "blocked-subcommand", "manifest push"},
		{"docker trust sign i:1", "block", "blocked-subcommand", "trust sign"},
		{"docker builder imagetools create -t x y", "block", "blocked-subcommand", "buildx imagetools create"},
		{"docker buildx b --push .", "block", "blocked-subcommand", "buildx build"},
		{"docker image build -o type=tar,dest=x .", "block", "blocked-subcommand", "buildx build"},
		{"docker build --load .", "block", "blocked-subcommand", "buildx build"},
		{"docker build -t x --output=type=docker .", "block", "blocked-subcommand", "buildx build"},
		{"docker buildx bake --set app.output=type=registry", "block", "blocked-subcommand", "buildx bake"},
		{"docker buildx bake --set app.tags=x", "allow", "", "buildx bake"},
		{"docker bake --load", "block", "blocked-subcommand", "buildx bake"},
		{"docker compose watch", "block", "blocked-subcommand", "compose watch"},
		{"docker compose up -dw", "block", "blocked-subcommand", "compose up"},
		{"docker compose up -d --watch=false", "allow", "", "compose up"},
		{"docker compose alpha publish x", "block", "blocked-subcommand", "compose alpha publish"},
		{"docker compose publish x", "block", "blocked-subcommand", "compose publish"},
		{"docker compose commit svc", "block", "blocked-subcommand", "compose commit"},
		{"docker compose --dry-run exec svc sh", "block", "blocked-subcommand", "compose exec"},
		{"docker compose -f a.yml -f b.yml up -d", "allow", "", "compose up"},
		{"docker compose logs -f svc", "allow", "", "compose logs"},
		{"docker compose -pp exec s sh", "block", "blocked-subcommand", "compose exec"},
		{"docker compose --help exec s sh", "block", "blocked-subcommand", "compose exec"},
		{"docker compose exec --help", "allow", "", "compose exec"},
		{"docker compose -- exec s", "block", "unknown", "compose"},
		{"docker buildx dial-stdio", "block", "blocked-subcommand", "buildx dial-stdio"},
		{"docker buildx --builder b -D ls", "allow", "", "buildx ls"},
		{"docker buildx ls --builder b", "allow", "", "buildx ls"},
		// Escape flags.
		{"docker run -v /:/host img", "block", "escape-flags", "run"},
		{"docker run -v //:/host img", "block", "escape-flags", "run"},
		{"docker run -v /srv/../etc:/x img", "block", "escape-flags", "run"},
		{"docker run -v /etc/:/x img", "block", "escape-flags", "run"},
		{"docker run -v /var:/x img", "block", "escape-flags", "run"},
		{"docker run -v /run:/x img", "block", "escape-flags", "run"},
		{"docker run -v /var/run/docker.sock:/s img", "block", "escape-flags", "run"},
		{"docker run -v ./x:/x img", "block", "escape-flags", "run"},
		{"docker run -v ../..:/x img", "block", "escape-flags", "run"},
		{"docker run -itv/etc:/e img", "block", "escape-flags", "run"},
		{"docker run -v=/root:/r img", "block", "escape-flags", "run"},
		{"docker run --volume=/home/u/p:/p img", "block", "escape-flags", "run"},
		{"docker run -v /srv/app:/app -v data:/data -v /anon img", "allow", "", "run"},
		{"docker run --mount type=bind,source=/,target=/h img", "block", "escape-flags", "run"},
		{"docker run --mount type=bind,SRC=/proc,dst=/p img", "block", "escape-flags", "run"},
		{"docker run --mount \"type=bind,src=/srv\",dst=/p img", "block", "escape-flags", "run"},
		{"docker run --mount type=volume,src=data,dst=/d img", "allow", "", "run"},
		{"docker run --mount type=volume,dst=/d,volume-opt=device=/etc img", "block", "escape-flags", "run"},
		{"docker run --pid=host img", "block", "escape-flags", "run"},
		{"docker run --net host img", "block", "escape-flags", "run"},
		{"docker run --network container:db img", "block", "escape-flags", "run"},
		{"docker run --network bridge --ipc private img", "allow", "", "run"},
		{"docker run --userns=host img", "block", "escape-flags", "run"},
		{"docker run --uts host img", "block", "escape-flags", "run"},
		{"docker run --cgroupns=host img", "block", "escape-flags", "run"},
		{"docker run --cap-add NET_ADMIN img", "block", "escape-flags", "run"},
		{"docker run --device /dev/sda img", "block", "escape-flags", "run"},
		{"docker run --volumes-from c img", "block", "escape-flags", "run"},
		{"docker run --security-opt seccomp=unconfined img", "block", "escape-flags", "run"},
		{"docker run --security-opt label:disable img", "block", "escape-flags", "run"},
		{"docker run --security-opt no-new-privileges=false img", "block", "escape-flags", "run"},
		{"docker run --security-opt no-new-privileges img", "allow", "", "run"},
		{"docker run --privileged=false img", "allow", "", "run"},
		{"docker create --privileged img", "block", "escape-flags", "create"},
		{"docker container create -v /boot:/b img", "block", "escape-flags", "container create"},
		{"docker compose run -v /:/h svc", "block", "escape-flags", "compose run"},
		{"docker compose run --cap-add ALL svc", "block", "escape-flags", "compose run"},
		{"docker service create --mount type=bind,src=/,dst=/h img", "block", "escape-flags", "service create"},
		{"docker volume create --opt type=none --opt o=bind --opt device=/etc v", "block", "escape-flags", "volume create"},
		{"docker volume create --opt type=tmpfs --opt device=tmpfs v", "allow", "", "volume create"},
		{"docker plugin install --grant-all-permissions p", "block", "escape-flags", "plugin install"},
		{"docker checkpoint create --checkpoint-dir /tmp c cp1", "block", "escape-flags", "checkpoint create"},
		{"docker buildx build --allow network.host .", "block", "escape-flags", "buildx build"},
		{"docker buildx build --allow=network.host,security.insecure .", "block", "escape-flags", "buildx build"},
		{"docker buildx create --name b", "block", "escape-flags", "buildx create"},
		// Unknown commands and plugins.
		{"docker debug c", "block", "unknown", ""},
		{"docker evil exec", "block", "unknown", ""},
		{"docker · exec c", "block", "unknown", ""},
		{"docker - exec c", "block", "unknown", ""},
		{"docker __complete exec ·", "allow", "", "__complete"},
		{"docker -D __completeNoDesc attach ·", "allow", "", "__completeNoDesc"},
		{"docker image --help ctr:/etc/passwd alpine", "allow", "", "image"},
		{"docker image ctr:/etc/passwd --help=false", "block", "unknown", "image"},
		{"docker help -h=false --help .", "allow", "", "help"},
		{"docker compose --help evil", "allow", "", "compose"},
		{"docker compose evil --help", "block", "unknown", "compose"},
		{"docker help exec", "allow", "", "help"},
		{"docker help evil", "block", "unknown", "help"},
		{"docker compose help exec", "allow", "", "compose help"},
		// Everyday commands.
		{"docker ps -a --format {{.Names}}", "allow", "", "ps"},
		{"docker images -q", "allow", "", "images"},
		{"docker run --rm busybox true", "allow", "", "run"},
		{"docker run -d --name web -p 8080:80 -e A=/etc -w /etc --tmpfs /etc nginx", "allow", "", "run"},
		{"docker build -t app:1 -f Dockerfile .", "allow", "", "buildx build"},
		{"docker pull alpine", "allow", "", "pull"},
		{"docker stats --no-stream", "allow", "", "stats"},
		{"docker system prune -af", "allow", "", "system prune"},
		{"docker network create n", "allow", "", "network create"},
		{"docker compose up -d --build", "allow", "", "compose up"},
		{"docker version --format x", "allow", "", "version"},
	}
	for _, c := range cases {
		argv := strings.Fields(c.argv)
		for i, a := range argv {
			if a == "·" {
				argv[i] = ""
			}
			argv[i] = strings.ReplaceAll(argv[i], "\"", `"`)
		}
		d := tab.Decide(policy.BinDocker, argv)
		got := d.Verdict.String()
		if got != c.want || d.Rule.String() != c.rule || d.Command != c.command {
			t.Errorf("%s: got %s/%s %q (%s), want %s/%s %q", c.argv, got, d.Rule, d.Command, d.Reason, c.want, c.rule, c.command)
		}
	}
}

// Plugin binaries, as the CLI (or a user) execs them.
func TestPluginEntries(t *testing.T) {
	tab := compileDefault(t)
	cases := []struct {
		bin  policy.Binary
		argv string
		want string
	}{
		{policy.BinCompose, "docker-compose docker-cli-plugin-metadata", "allow"},
		{policy.BinCompose, "docker-compose compose exec s sh", "block"},
		{policy.BinCompose, "docker-compose --config /x compose exec s sh", "block"},
		{policy.BinCompose, "docker-compose exec s sh", "block"},
		{policy.BinCompose, "docker-compose -H unix:///s --verbose cp s:/x -", "block"},
		{policy.BinCompose, "docker-compose -f a.yml up -d", "allow"},
		{policy.BinCompose, "docker-compose compose ps", "allow"},
		{policy.BinCompose, "docker-compose help compose exec", "allow"},
		{policy.BinCompose, "docker-compose -v", "allow"},
		{policy.BinBuildx, "docker-buildx buildx build --push .", "block"},
		{policy.BinBuildx, "docker-buildx buildx build -t x .", "allow"},
		{policy.BinBuildx, "docker-buildx --builder b build -o x .", "block"},
		{policy.BinBuildx, "docker-buildx buildx prune -f", "allow"},
		{policy.BinBuildx, "docker-buildx buildx dial-stdio", "block"},
		{policy.BinBuildx, "docker-buildx docker-cli-plugin-metadata", "allow"},
	}
	for _, c := range cases {
		d := tab.Decide(c.bin, strings.Fields(c.argv))
		if d.Verdict.String() != c.want {
			t.Errorf("%s %s: got %s/%s (%s), want %s", c.bin, c.argv, d.Verdict, d.Rule, d.Reason, c.want)
		}
	}
}

func TestUndecided(t *testing.T) {
	tab := compileDefault(t)
	long := []string{"docker", "ps", "--filter", strings.Repeat("x", policy.MaxArgvBytes)}
	if d := tab.Decide(policy.BinDocker, long); d.Verdict != policy.VerdictUndecided || !strings.Contains(d.Reason, "too long") {
		t.Errorf("long argv: %+v", d)
	}
	many := []string{"docker", "ps"}
	for len(many) <= policy.MaxTokens {
		many = append(many, "-q")
	}
	if d := tab.Decide(policy.BinDocker, many); d.Verdict != policy.VerdictUndecided {
		t.Errorf("many tokens: %+v", d)
	}
	ok := append([]string(nil), many[:policy.MaxTokens]...)
	if d := tab.Decide(policy.BinDocker, ok); d.Verdict != policy.VerdictAllow {
		t.Errorf("%d tokens: %+v", len(ok), d)
	}
}

func TestPolicyOptions(t *testing.T) {
	p := policy.DefaultPolicy()
	p.Block = []string{"exec", "system prune", "compose down"}
	p.Escape = policy.ActionAudit
	tab, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	for argv, want := range map[string]string{
		"docker exec c sh":           "block",
		"docker cp c:/x -":           "allow",
		"docker system prune -f":     "block",
		"docker compose down":        "block",
		"docker run --privileged i":  "audit",
		"docker system dial-stdio":   "block",
		"docker bogus":               "block",
		"docker container exec c sh": "block",
	} {
		if d := tab.Decide(policy.BinDocker, strings.Fields(argv)); d.Verdict.String() != want {
			t.Errorf("%s: got %s (%s), want %s", argv, d.Verdict, d.Reason, want)
		}
	}
	for _, bad := range [][]string{{"exce"}, {"system nope"}, {""}} {
		p := policy.DefaultPolicy()
		p.Block = bad
		if _, err := policy.Compile(p); err == nil || !strings.Contains(err.Error(), "block entry") {
			t.Errorf("block %q: got %v, want a block entry error", bad, err)
		}
	}
	p = policy.DefaultPolicy()
	p.Plugins = []string{"evil"}
	if _, err := policy.Compile(p); err == nil {
		t.Error("unknown plugin accepted")
	}
	p = policy.DefaultPolicy()
	p.Mode = policy.ActionAudit
	tab, _ = policy.Compile(p)
	if d := tab.Decide(policy.BinDocker, []string{"docker", "exec", "c"}); d.Verdict != policy.VerdictAudit || !strings.HasPrefix(d.Reason, "audit only") {
		t.Errorf("audit mode: %+v", d)
	}
}

package policy

// The default policy of DESIGN.md §3, as data. Paths name commands in their own tree:
// "docker container exec", "compose exec", "buildx build". Docker's build, bake, builder and
// image build are forwarded to buildx by the CLI, so their rules live on the buildx nodes.

// Operations are the names accepted in Policy.Block besides command paths.
var Operations = []string{"exec", "cp", "commit", "diff", "export", "import", "load", "save", "attach", "push", "tag"}

// SeedBlock is the wrapper script's list, the default for Policy.Block.
var SeedBlock = []string{"exec", "cp", "commit", "diff", "export", "import", "load", "save", "attach", "push", "tag"}

// DefaultSensitivePaths are the host paths a bind mount may not touch (same, under or ancestor).
var DefaultSensitivePaths = []string{"/etc", "/root", "/home", "/proc", "/sys", "/dev", "/boot", "/nix",
	"/var/lib/docker", "/run/docker.sock", "/var/run/docker.sock"}

// DefaultPolicy is the embedded policy: seed list with equivalents, escape flags and unknown
// commands blocked, compose and buildx trusted.
func DefaultPolicy() Policy {
	return Policy{
		Mode:           ActionBlock,
		Block:          append([]string(nil), SeedBlock...),
		Escape:         ActionBlock,
		Unknown:        ActionBlock,
		SensitivePaths: append([]string(nil), DefaultSensitivePaths...),
		Plugins:        []string{"compose", "buildx"},
	}
}

// anyOp marks an equivalent that is blocked when any operation at all is blocked: raw API
// tunnels give every operation.
const anyOp = "*"

// equivalent is a command (or a command with a flag) that does what an operation does.
type equivalent struct {
	ops   []string // blocked if any of these operations is blocked
	paths []string // command paths
	flags []string // long flag names; empty: the command itself
	match *matcher // for value flags: which values make it equivalent (nil: any value)
}

type matcher struct {
	extract  uint8
	patterns []pat
}

type pat struct {
	kind uint8
	s    string
}

var equivalents = []equivalent{
	{ops: []string{"exec"}, paths: []string{"docker exec", "docker container exec", "compose exec"}},
	{ops: []string{"cp"}, paths: []string{"docker cp", "docker container cp", "compose cp"}},
	{ops: []string{"commit"}, paths: []string{"docker commit", "docker container commit", "compose commit"}},
	{ops: []string{"diff"}, paths: []string{"docker diff", "docker container diff"}},
	{ops: []string{"export"}, paths: []string{"docker export", "docker container export", "compose export"}},
	{ops: []string{"import"}, paths: []string{"docker import", "docker image import"}},
	{ops: []string{"load"}, paths: []string{"docker load", "docker image load"}},
	{ops: []string{"save"}, paths: []string{"docker save", "docker image save"}},
	{ops: []string{"attach"}, paths: []string{"docker attach", "docker container attach", "compose attach"}},
	{ops: []string{"push"}, paths: []string{"docker push", "docker image push", "compose push", "compose publish",
		"compose alpha publish", "docker plugin push", "docker manifest push", "docker trust sign", "buildx imagetools create"}},
	{ops: []string{"tag"}, paths: []string{"docker tag", "docker image tag"}},
	// compose watch copies files into containers and runs exec there.
	{ops: []string{"exec", "cp"}, paths: []string{"compose watch"}},
	{ops: []string{"exec", "cp"}, paths: []string{"compose up"}, flags: []string{"watch"}},
	{ops: []string{anyOp}, paths: []string{"docker system dial-stdio", "buildx dial-stdio"}},
	// start -a/-i attaches to an existing, even running, container.
	{ops: []string{"attach"}, paths: []string{"docker start", "docker container start"}, flags: []string{"attach", "interactive"}},
	{ops: []string{"push"}, paths: []string{"compose build", "buildx build", "buildx bake"}, flags: []string{"push"}},
	{ops: []string{"load"}, paths: []string{"buildx build", "buildx bake"}, flags: []string{"load"}},
	// BuildKit exporters: registry (push), docker/oci tarballs (save), local/tar (export).
	{ops: []string{"push", "save", "export"}, paths: []string{"buildx build"}, flags: []string{"output"}},
	{ops: []string{"push", "save", "export"}, paths: []string{"buildx bake"}, flags: []string{"set"},
		match: &matcher{ExtractKVKey, []pat{{PatSuffix, ".output"}, {PatExact, "output"}, {PatSuffix, ".push"}, {PatExact, "push"}}}},
}

// escape is a flag (or a whole command) that lets a container reach the host.
type escape struct {
	paths []string
	flags []string // empty: the command itself
	match *matcher // for value flags: which values escape (nil: any value)
}

var nsHost = &matcher{ExtractWhole, []pat{{PatExact, "host"}, {PatPrefix, "container:"}}}

// containerCreators are the commands that create containers from flags.
var containerCreators = []string{"docker run", "docker create", "docker container run", "docker container create",
	"compose run", "docker service create"}

// bindPaths is filled with the sensitive paths at compile time.
const bindPaths = "\x00paths"

var escapes = []escape{
	{paths: containerCreators, flags: []string{"privileged", "cap-add", "volumes-from", "device", "device-cgroup-rule",
		"device-read-bps", "device-read-iops", "device-write-bps", "device-write-iops"}},
	{paths: containerCreators, flags: []string{"volume"}, match: &matcher{ExtractVolumeSrc, []pat{{PatPath, bindPaths}}}},
	{paths: containerCreators, flags: []string{"mount"}, match: &matcher{ExtractCSVField,
		[]pat{{PatKey, "source"}, {PatKey, "src"}, {PatKey, "volume-opt"}, {PatPath, bindPaths}}}},
	{paths: []string{"docker service update"}, flags: []string{"mount-add"}, match: &matcher{ExtractCSVField,
		[]pat{{PatKey, "source"}, {PatKey, "src"}, {PatKey, "volume-opt"}, {PatPath, bindPaths}}}},
	{paths: []string{"docker service update"}, flags: []string{"cap-add"}},
	{paths: containerCreators, flags: []string{"pid", "ipc", "uts", "userns", "cgroupns", "network", "net"}, match: nsHost},
	{paths: containerCreators, flags: []string{"security-opt"}, match: &matcher{ExtractWhole, []pat{
		{PatSuffix, "=unconfined"}, {PatSuffix, ":unconfined"}, {PatExact, "label=disable"}, {PatExact, "label:disable"},
		{PatExact, "no-new-privileges=false"}, {PatExact, "no-new-privileges:false"}}}},
	{paths: []string{"docker volume create"}, flags: []string{"opt"}, match: &matcher{ExtractCSVField,
		[]pat{{PatKey, "device"}, {PatPath, bindPaths}}}},
	{paths: []string{"docker plugin install"}, flags: []string{"grant-all-permissions"}},
	{paths: []string{"docker checkpoint create"}, flags: []string{"checkpoint-dir"}},
	{paths: []string{"buildx build", "buildx bake"}, flags: []string{"allow"}, match: &matcher{ExtractCSVElem,
		[]pat{{PatExact, "security.insecure"}, {PatExact, "network.host"}}}},
	// A docker-container builder is a privileged container whose image --driver-opt chooses.
	{paths: []string{"buildx create"}},
}

package vmtest

import (
	"time"

	"github.com/dockwatch/dockwatch/vm"
)

// suites run, in this order, inside every VM of the matrix (unless Configs narrows a suite to
// some configurations). Adding one is one line: a package with tests, built static
// (CGO_ENABLED=0), run as root with -test.v from a copy of its testdata directory. Inside the
// guest a suite sees DWVM_CONFIG, DWVM_EXPECT_BPF_LSM (1 or 0), DOCKWATCH_VM=1,
// DOCKWATCH_DOCKER_CLI and DOCKWATCH_FAKEAPI in its environment.
var suites = []vm.Suite{
	// The pure-Go classifier proves the harness. TestGroundTruth runs the docker CLI for every
	// corpus row, which takes minutes under TCG; the host runs it.
	{Name: "policy", Package: "./internal/policy", Args: []string{"-test.short", "-test.skip=^TestGroundTruth$"}},
	{Name: "lsmprobe", Package: "./test/vm/guest", Timeout: time.Minute},
	// Kernel enforcement in the VM's mode (lsm, or the 6.1 fallback): blocked docker commands,
	// bypass attempts against the fake API, attacks on a running client, LD_PRELOAD.
	{Name: "lsm", Package: "./test/lsm", Timeout: 4 * time.Minute},
	// {Name: "loader", Package: "./internal/loader", Args: []string{"-test.short"}},
	// {Name: "e2e-lsm", Package: "./test/e2e", Args: []string{"-test.run=LSM"}, Configs: []string{"6.12-lsm", "6.1-lsm"}},
}

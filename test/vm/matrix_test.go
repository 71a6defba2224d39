// Package vmtest boots Debian's 6.1 and 6.12 cloud kernels under qemu (TCG) and runs the
// suites of suites_test.go inside each: the BPF LSM active by default, the BPF LSM enabled
// through lsm= (as the NixOS module does), and a kernel booted without bpf in lsm= (fallback
// mode).
//
//	go test -v -count=1 -timeout 20m ./test/vm -run TestVMMatrix
//
// Kernels are downloaded with apt-get into .cache/vm/kernels of the module (or
// $DOCKWATCH_VM_CACHE) once; the last initramfs is kept in .cache/vm/build and each boot's
// console and results in .cache/vm/logs.
// $DWVM_PARALLEL sets how many VMs run at once (default 1).
package vmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/vm"
)

// config is one VM of the matrix.
type config struct {
	name   string
	kernel vm.KernelSource
	lsm    string // lsm= on the kernel command line; "" keeps CONFIG_LSM
	bpfLSM bool   // whether bpf must be active
}

// lsmWithoutBPF is Debian's default list up to apparmor (the LSMs its kernels build), without
// bpf.
const lsmWithoutBPF = "landlock,lockdown,yama,integrity,apparmor"

var matrix = []config{
	// Debian's 6.12 lists bpf in CONFIG_LSM: production kernels with no lsm= on the cmdline.
	{name: "6.12-lsm", kernel: vm.Debian612, lsm: "", bpfLSM: true},
	// The NixOS module appends bpf to lsm=; Debian's 6.1 also has it in CONFIG_LSM.
	{name: "6.1-lsm", kernel: vm.Debian61, lsm: lsmWithoutBPF + ",bpf", bpfLSM: true},
	// Fallback mode on the oldest target kernel: no BPF LSM, and no cgroup/connect_unix
	// (6.7+), so the syscall-tracepoint connect path is the one exercised.
	{name: "6.1-fallback", kernel: vm.Debian61, lsm: lsmWithoutBPF, bpfLSM: false},
}

// loudSkip skips with a banner on stderr too: a skipped VM matrix must not look like a pass.
func loudSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "\n%s\n!!! VM MATRIX SKIPPED: %s\n%s\n\n", strings.Repeat("!", 72), msg, strings.Repeat("!", 72))
	t.Skip(msg)
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}

func TestVMMatrix(t *testing.T) {
	qemu, err := vm.QEMUPath()
	if err != nil {
		loudSkip(t, "%v", err)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the matrix builds its guest binaries with the go command: %v", err)
	}
	ctx := t.Context()
	root := moduleRoot(t)
	cache := os.Getenv("DOCKWATCH_VM_CACHE")
	if cache == "" {
		cache = filepath.Join(root, ".cache", "vm")
	}
	total := time.Now()

	// Kernels, each fetched once.
	kernels := map[string]vm.Kernel{}
	for _, c := range matrix {
		if _, ok := kernels[c.kernel.Name]; ok {
			continue
		}
		start := time.Now()
		k, err := vm.FetchKernel(ctx, cache, c.kernel)
		if errors.Is(err, vm.ErrKernelUnavailable) {
			loudSkip(t, "%v", err)
		}
		if err != nil {
			t.Fatalf("fetch kernel: %v", err)
		}
		defaultLSM, err := k.ConfigValue("LSM")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kernel %s: %s (%s), CONFIG_LSM=%q, ready in %s", c.kernel.Name, k.Release, k.Package, defaultLSM, time.Since(start).Round(time.Millisecond))
		kernels[c.kernel.Name] = k
	}

	// One initramfs for every VM: the configuration reaches the guest on the command line.
	docker, err := exec.LookPath("docker")
	if err != nil {
		fmt.Fprintf(os.Stderr, "!!! no docker CLI on PATH: the guest gets none (%v)\n", err)
		docker = ""
	}
	// The last build stays next to the logs, so the qemu command line printed on a failure
	// can be rerun by hand.
	buildDir := filepath.Join(cache, "build")
	if err := os.RemoveAll(buildDir); err != nil {
		t.Fatalf("clean build directory: %v", err)
	}
	built, err := vm.Build(ctx, vm.BuildOptions{
		ModuleRoot: root,
		OutDir:     buildDir,
		Suites:     suites,
		DockerCLI:  docker,
		Log:        t.Logf,
	})
	if err != nil {
		t.Fatalf("build initramfs: %v", err)
	}

	// One at a time by default: each VM is one TCG thread, the build machines have two cores
	// shared with other work, and sequential runs give comparable wall times.
	parallel := 1
	if v := os.Getenv("DWVM_PARALLEL"); v != "" {
		if parallel, err = strconv.Atoi(v); err != nil || parallel < 1 {
			t.Fatalf("DWVM_PARALLEL=%q: want a positive number", v)
		}
	}
	slots := make(chan struct{}, parallel)
	var mu sync.Mutex
	var summary []string
	t.Run("vms", func(t *testing.T) {
		for _, c := range matrix {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				slots <- struct{}{}
				defer func() { <-slots }()
				line := runConfig(t, qemu, c, kernels[c.kernel.Name], built, filepath.Join(cache, "logs", c.name))
				mu.Lock()
				summary = append(summary, line)
				mu.Unlock()
			})
		}
	})
	t.Logf("VM matrix (%d at a time):\n  %s\ntotal wall time %s", parallel, strings.Join(summary, "\n  "), time.Since(total).Round(time.Millisecond))
}

// runConfig boots one VM, checks it, and returns its summary line.
func runConfig(t *testing.T, qemu string, c config, k vm.Kernel, built *vm.Built, logDir string) string {
	expectLSM := "0"
	if c.bpfLSM {
		expectLSM = "1"
	}
	m := vm.Machine{
		Name:      c.name,
		QEMU:      qemu,
		Kernel:    k.Vmlinuz,
		Initramfs: built.Initramfs,
		LSM:       c.lsm,
		Cmdline:   []string{vm.CmdlinePrefix + "expect_bpf_lsm=" + expectLSM},
		Timeout:   8 * time.Minute,
		LogDir:    logDir,
	}
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		if left := time.Until(d) - 30*time.Second; left < m.Timeout {
			m.Timeout = max(left, time.Minute)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	boot, err := m.Run(ctx)
	if err != nil {
		t.Fatalf("boot %s: %v", c.name, err)
	}

	var want vm.Expect
	want.BPFLSM = c.bpfLSM
	for _, s := range built.Manifest.Suites {
		if s.RunsIn(c.name) {
			want.Suites = append(want.Suites, s.Name)
		}
	}
	problems := boot.Check(want)

	bootTime := "?"
	lsm := "?"
	if tr := boot.Transcript; tr != nil && tr.Info != nil {
		bootTime = fmt.Sprintf("%.1fs", tr.Info.UptimeSec)
		lsm = tr.Info.LSM
	}
	var suiteTimes []string
	if boot.Transcript != nil {
		for _, s := range boot.Transcript.Suites {
			suiteTimes = append(suiteTimes, fmt.Sprintf("%s %s %.1fs", s.Suite, s.Status, s.Seconds))
			for _, line := range strings.Split(s.Output, "\n") {
				if i := strings.Index(line, "probe: "); i >= 0 {
					t.Logf("%s: %s", s.Suite, line[i:])
				}
			}
		}
	}
	for _, skip := range boot.Skips() {
		t.Logf("SKIPPED IN GUEST: %s", skip)
	}
	line := fmt.Sprintf("%-13s kernel %-24s lsm=%s boot %s, wall %s [%s]", c.name, k.Release, lsm, bootTime,
		boot.Wall.Round(100*time.Millisecond), strings.Join(suiteTimes, ", "))
	t.Log(line)
	if len(problems) > 0 {
		t.Logf("qemu: %s", strings.Join(boot.Args, " "))
		t.Logf("console (%s):\n%s", filepath.Join(logDir, "console.log"), tail(boot.Console, 60))
		if boot.Transcript != nil {
			for _, s := range boot.Transcript.Suites {
				if s.Status != vm.StatusPass || !s.Ended {
					t.Logf("suite %s output:\n%s", s.Suite, tail([]byte(s.Output), 150))
				}
			}
		} else {
			t.Logf("results (%s):\n%s", filepath.Join(logDir, "results.log"), tail(boot.Results, 150))
		}
		t.Errorf("%s failed:\n  %s", c.name, strings.Join(problems, "\n  "))
		line += " FAILED"
	}
	return line
}

// tail returns the last n lines of data.
func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(data), "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

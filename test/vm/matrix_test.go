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
	gate   string // the connect gate the loader must choose (loader.Gate.String)
}

// lsmWithoutBPF is Debian's default list up to apparmor (the LSMs its kernels build), without
// bpf.
const lsmWithoutBPF = "landlock,lockdown,yama,integrity,apparmor"

// lsm612WithoutBPF is Debian 6.12's CONFIG_LSM without bpf.
const lsm612WithoutBPF = "lockdown,capability,landlock,yama,apparmor,tomoyo,ipe,ima,evm"

// Connect gates (loader.Gate.String).
const (
	gateLSM   = "lsm/unix_stream_connect"
	gateEnter = "tracepoint/syscalls/sys_enter_connect"
)

var matrix = []config{
	// Debian's 6.12 lists bpf in CONFIG_LSM: production kernels with no lsm= on the cmdline.
	{name: "6.12-lsm", kernel: vm.Debian612, lsm: "", bpfLSM: true, gate: gateLSM},
	// The NixOS module appends bpf to lsm=; Debian's 6.1 also has it in CONFIG_LSM.
	{name: "6.1-lsm", kernel: vm.Debian61, lsm: lsmWithoutBPF + ",bpf", bpfLSM: true, gate: gateLSM},
	// Fallback mode on the oldest target kernel: no BPF LSM, and no cgroup/connect_unix
	// (6.7+), so the syscall-tracepoint connect path is the one exercised.
	{name: "6.1-fallback", kernel: vm.Debian61, lsm: lsmWithoutBPF, bpfLSM: false, gate: gateEnter},
	// Fallback mode on 6.12: cgroup/connect_unix exists, but its programs may not call
	// bpf_task_storage_get, so the loader's probe must pick the sys_enter_connect gate.
	{name: "6.12-fallback", kernel: vm.Debian612, lsm: lsm612WithoutBPF, bpfLSM: false, gate: gateEnter},
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

// harness is what every VM test needs: qemu, the module, the cache and the kernels.
type harness struct {
	qemu    string
	root    string
	cache   string
	kernels map[string]vm.Kernel // by KernelSource.Name
}

// setup finds qemu and fetches the kernels of configs, skipping loudly when either is missing.
func setup(t *testing.T, configs []config) *harness {
	t.Helper()
	qemu, err := vm.QEMUPath()
	if err != nil {
		loudSkip(t, "%v", err)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the matrix builds its guest binaries with the go command: %v", err)
	}
	h := &harness{qemu: qemu, root: moduleRoot(t), kernels: map[string]vm.Kernel{}}
	h.cache = os.Getenv("DOCKWATCH_VM_CACHE")
	if h.cache == "" {
		h.cache = filepath.Join(h.root, ".cache", "vm")
	}
	for _, c := range configs {
		if _, ok := h.kernels[c.kernel.Name]; ok {
			continue
		}
		start := time.Now()
		k, err := vm.FetchKernel(t.Context(), h.cache, c.kernel)
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
		h.kernels[c.kernel.Name] = k
	}
	return h
}

// build writes one initramfs for every VM (the configuration reaches the guest on the kernel
// command line) into the cache's build/NAME, where it stays after the test so that the qemu
// command line printed on a failure can be rerun by hand.
func (h *harness) build(t *testing.T, name string, suites []vm.Suite, withDocker bool) *vm.Built {
	t.Helper()
	var docker string
	if withDocker {
		var err error
		if docker, err = exec.LookPath("docker"); err != nil {
			fmt.Fprintf(os.Stderr, "!!! no docker CLI on PATH: the guest gets none (%v)\n", err)
			docker = ""
		}
	}
	dir := filepath.Join(h.cache, "build", name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("clean build directory: %v", err)
	}
	built, err := vm.Build(t.Context(), vm.BuildOptions{
		ModuleRoot: h.root,
		OutDir:     dir,
		Suites:     suites,
		DockerCLI:  docker,
		Log:        t.Logf,
	})
	if err != nil {
		t.Fatalf("build initramfs: %v", err)
	}
	return built
}

func TestVMMatrix(t *testing.T) {
	total := time.Now()
	h := setup(t, matrix)
	built := h.build(t, "matrix", suites, true)

	// One at a time by default: each VM is one TCG thread, the build machines have two cores
	// shared with other work, and sequential runs give comparable wall times.
	parallel := 1
	if v := os.Getenv("DWVM_PARALLEL"); v != "" {
		var err error
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
				line := runConfig(t, h, c, built)
				mu.Lock()
				summary = append(summary, line)
				mu.Unlock()
			})
		}
	})
	// "[report]" lines are printed by .ci/testsummary even when the test passes.
	t.Logf("[report] VM matrix (%d at a time):\n[report]   %s\n[report] total wall time %s", parallel,
		strings.Join(summary, "\n[report]   "), time.Since(total).Round(time.Millisecond))
}

// runConfig boots one VM, checks it, and returns its summary line.
func runConfig(t *testing.T, h *harness, c config, built *vm.Built) string {
	boot, problems := h.boot(t, c, built)
	k := h.kernels[c.kernel.Name]
	logDir := boot.Machine.LogDir
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
func (h *harness) boot(t *testing.T, c config, built *vm.Built) (*vm.Boot, []string) {
	t.Helper()
	k := h.kernels[c.kernel.Name]
	expectLSM := "0"
	if c.bpfLSM {
		expectLSM = "1"
	}
	m := vm.Machine{
		Name:      c.name,
		QEMU:      h.qemu,
		Kernel:    k.Vmlinuz,
		Initramfs: built.Initramfs,
		LSM:       c.lsm,
		Cmdline:   []string{vm.CmdlinePrefix + "expect_bpf_lsm=" + expectLSM},
		Timeout:   8 * time.Minute,
		LogDir:    filepath.Join(h.cache, "logs", c.name),
	}
	if c.gate != "" {
		m.Cmdline = append(m.Cmdline, vm.CmdlinePrefix+"expect_gate="+c.gate)
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
	return boot, boot.Check(want)
}

// TestVMMatrixSelfCheck proves that the harness fails what it should: a suite that fails, and
// a guest that dies in the middle of a suite (the canary powers the VM off, as a crash would).
func TestVMMatrixSelfCheck(t *testing.T) {
	c := config{name: "selfcheck", kernel: vm.Debian61, lsm: lsmWithoutBPF, bpfLSM: false}
	h := setup(t, []config{c})
	built := h.build(t, "selfcheck", []vm.Suite{
		{Name: "canary-fail", Package: "./test/vm/testdata/canary", Args: []string{"-test.run=^TestFail$"}},
		{Name: "canary-poweroff", Package: "./test/vm/testdata/canary", Args: []string{"-test.run=^TestPowerOff$"}},
		{Name: "after-poweroff", Package: "./test/vm/guest"},
	}, false)
	boot, problems := h.boot(t, c, built)
	t.Logf("selfcheck boot: wall %s, problems:\n  %s", boot.Wall.Round(100*time.Millisecond), strings.Join(problems, "\n  "))
	all := strings.Join(problems, "\n")
	for _, want := range []string{
		"suite canary-fail: FAIL (exit 1)",
		"suite canary-poweroff: no end marker",
		"suite after-poweroff: never started",
		"no done marker",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the harness missed %q", want)
		}
	}
	if boot.Transcript == nil || boot.Transcript.Info == nil {
		t.Fatalf("the canary VM never reported; console:\n%s", tail(boot.Console, 40))
	}
	if out := boot.Transcript.Suite("canary-fail").Output; !strings.Contains(out, "deliberate failure") {
		t.Errorf("canary-fail output lost:\n%s", out)
	}
	for _, p := range problems {
		if strings.Contains(p, "active LSMs") || strings.Contains(p, "kernel console") || strings.Contains(p, "qemu") {
			t.Errorf("unexpected problem: %s", p)
		}
	}
}

// Command guestinit is PID 1 of the test VMs. It mounts the kernel filesystems dockwatch needs,
// reports the kernel and its active LSMs, runs every suite of the manifest with -test.v, writes
// the output between marker lines to the second serial port, and powers the VM off.
//
// It is built static (CGO_ENABLED=0) and packed as /init by package vm. PID 1 must never exit:
// when the kernel loses its init it panics, so every failure is reported and followed by the
// power-off.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockwatch/dockwatch/vm"
)

// mounts are the filesystems of a dockwatch host, in order (a mount point may live on an
// earlier mount). A failure is reported but does not stop the suites: a suite that needs the
// filesystem says so itself.
var mounts = []struct{ source, target, fstype, data string }{
	{"proc", "/proc", "proc", ""},
	{"sysfs", "/sys", "sysfs", ""},
	{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
	{"devpts", "/dev/pts", "devpts", "ptmxmode=0666,mode=0620"},
	{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
	{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	{"tmpfs", "/run", "tmpfs", "mode=0755"},
	{"securityfs", "/sys/kernel/security", "securityfs", ""},
	{"tracefs", "/sys/kernel/tracing", "tracefs", ""},
	{"debugfs", "/sys/kernel/debug", "debugfs", ""},
	{"bpf", "/sys/fs/bpf", "bpf", "mode=0700"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate"},
}

func main() {
	console := os.Stdout // the kernel opened /dev/console for us
	logf := func(format string, args ...any) {
		fmt.Fprintf(console, "dwvm: "+format+"\n", args...)
	}
	uptime := readUptime()

	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			logf("mkdir %s: %v", m.target, err)
			continue
		}
		if err := syscall.Mount(m.source, m.target, m.fstype, 0, m.data); err != nil {
			logf("mount %s on %s: %v", m.fstype, m.target, err)
		}
	}

	results, err := os.OpenFile(vm.GuestResults, os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		logf("open results port %s: %v; writing results to the console", vm.GuestResults, err)
		results = console
	}
	code := run(results, logf, uptime)
	drain(results)
	drain(console)
	logf("powering off (%s)", code)
	syscall.Sync()
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		logf("power off: %v", err)
	}
	select {} // PID 1 must not exit
}

// run does the work and returns a one-word summary for the console.
func run(results *os.File, logf func(string, ...any), uptime float64) string {
	fail := func(err error) string {
		logf("%v", err)
		io.WriteString(results, vm.Marker(vm.MarkError, map[string]string{"error": err.Error()}))
		return "error"
	}

	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fail(fmt.Errorf("read kernel command line: %w", err))
	}
	env := baseEnv(strings.Fields(string(cmdline)))
	os.Setenv("PATH", lookupEnv(env, "PATH"))
	if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
		logf("bring up lo: %v", err)
	}
	if err := syscall.Sethostname([]byte("dwvm")); err != nil {
		logf("set hostname: %v", err)
	}

	info := vm.Info{
		Config:    lookupEnv(env, "DWVM_CONFIG"),
		Kernel:    unameRelease(),
		LSM:       readTrimmed("/sys/kernel/security/lsm"),
		Cmdline:   strings.TrimSpace(string(cmdline)),
		UptimeSec: uptime,
	}
	logf("config=%s kernel=%s lsm=%s booted in %.2fs", info.Config, info.Kernel, info.LSM, info.UptimeSec)
	io.WriteString(results, vm.Marker(vm.MarkInfo, info))

	data, err := os.ReadFile(vm.GuestManifest)
	if err != nil {
		return fail(fmt.Errorf("read manifest: %w", err))
	}
	var manifest vm.Manifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		return fail(fmt.Errorf("parse manifest %s: %w", vm.GuestManifest, err))
	}

	failed := 0
	for _, s := range manifest.Suites {
		if !s.RunsIn(info.Config) {
			continue
		}
		end := runSuite(results, s, env)
		logf("suite %s: %s (exit %d, %.1fs)%s", s.Name, end.Status, end.Exit, end.Seconds, suffix(end.Error))
		if end.Status != vm.StatusPass {
			failed++
		}
	}
	io.WriteString(results, vm.Marker(vm.MarkDone, struct{}{}))
	if failed > 0 {
		return fmt.Sprintf("%d suite(s) failed", failed)
	}
	return "all suites passed"
}

// runSuite runs one test binary in its own process group, writing its output straight to the
// results port, and kills whatever is left of the group when it ends or times out.
func runSuite(results *os.File, s vm.GuestSuite, env []string) (end vm.SuiteEnd) {
	io.WriteString(results, vm.Marker(vm.MarkBegin, vm.SuiteEnd{Suite: s.Name}))
	end = vm.SuiteEnd{Suite: s.Name, Status: vm.StatusFail, Exit: -1}
	start := time.Now()
	defer func() {
		end.Seconds = time.Since(start).Seconds()
		io.WriteString(results, vm.Marker(vm.MarkEnd, end))
	}()

	cmd := exec.Command(s.Binary, append([]string{"-test.v"}, s.Args...)...)
	cmd.Dir = s.Dir
	cmd.Env = append(append([]string{}, env...), s.Env...)
	cmd.Stdin = nil
	cmd.Stdout = results
	cmd.Stderr = results
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		end.Error = fmt.Sprintf("start %s: %v", s.Binary, err)
		return end
	}
	pgid := cmd.Process.Pid
	defer syscall.Kill(-pgid, syscall.SIGKILL)

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	timeout := time.Duration(s.TimeoutSec) * time.Second
	var err error
	select {
	case err = <-waited:
	case <-time.After(timeout):
		syscall.Kill(-pgid, syscall.SIGQUIT) // a Go test binary dumps its goroutines
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-waited
		}
		end.Status = vm.StatusTimeout
		end.Error = fmt.Sprintf("timed out after %s", timeout)
		return end
	}
	end.Exit = cmd.ProcessState.ExitCode()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		end.Status = vm.StatusPass
	case errors.As(err, &exitErr):
		// status stays FAIL
	default:
		end.Error = err.Error()
	}
	return end
}

// baseEnv is the environment of every suite: a root login on a dockwatch test VM, plus
// DWVM_NAME=VALUE for every dwvm.name=VALUE option on the kernel command line.
func baseEnv(cmdline []string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"USER=root",
		"LOGNAME=root",
		"TMPDIR=/tmp",
		"TERM=dumb",
		"DOCKWATCH_VM=1",
		"DOCKWATCH_DOCKER_CLI=" + vm.GuestDocker,
		"DOCKWATCH_FAKEAPI=" + vm.GuestFakeAPI,
	}
	for _, arg := range cmdline {
		rest, ok := strings.CutPrefix(arg, vm.CmdlinePrefix)
		if !ok {
			continue
		}
		name, value, _ := strings.Cut(rest, "=")
		name = "DWVM_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(name))
		env = append(env, name+"="+value)
	}
	return env
}

func lookupEnv(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}

func readTrimmed(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return strings.TrimSpace(string(data))
}

func readUptime() float64 {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		// /proc is not mounted yet at the very start; mount it just for this.
		if os.MkdirAll("/proc", 0o555) == nil && syscall.Mount("proc", "/proc", "proc", 0, "") == nil {
			data, err = os.ReadFile("/proc/uptime")
			syscall.Unmount("/proc", 0)
		}
		if err != nil {
			return -1
		}
	}
	first, _, _ := strings.Cut(string(data), " ")
	v, err := strconv.ParseFloat(first, 64)
	if err != nil {
		return -1
	}
	return v
}

func unameRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "unknown"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// drain waits until a tty has sent everything written to it: the power-off would drop it.
func drain(f *os.File) {
	const tcsbrk = 0x5409 // ioctl TCSBRK with a non-zero argument is tcdrain
	syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), tcsbrk, 1)
	f.Sync()
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

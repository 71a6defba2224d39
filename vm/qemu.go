package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Machine is one boot of a test VM.
type Machine struct {
	Name      string // matrix configuration, passed to the guest as dwvm.config
	QEMU      string // qemu-system-x86_64; "" looks it up on PATH
	Kernel    string // bzImage
	Initramfs string
	// LSM is the kernel's lsm= list; "" keeps the kernel's built-in default (CONFIG_LSM).
	LSM string
	// Cmdline holds extra kernel options; dwvm.NAME=VALUE options reach the suites as
	// DWVM_NAME=VALUE.
	Cmdline  []string
	MemoryMB int           // 0 means 1024
	Timeout  time.Duration // the whole boot; 0 means 10 minutes
	LogDir   string        // console.log and results.log are written here
}

// Boot is what one VM run left behind.
type Boot struct {
	Machine    Machine
	Args       []string // the qemu command line
	Console    []byte   // first serial port: kernel messages and the init's status lines
	Results    []byte   // second serial port: markers and suite output
	Transcript *Transcript
	Wall       time.Duration
	TimedOut   bool
	Err        error // qemu failed to run or exited non-zero
}

// QEMUPath finds qemu-system-x86_64.
func QEMUPath() (string, error) {
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", fmt.Errorf("find qemu-system-x86_64 (Debian: qemu-system-x86): %w", err)
	}
	return p, nil
}

// Run boots the machine and waits until the guest powers off, the kernel panics (panic=-1 and
// -no-reboot make qemu exit) or the timeout kills qemu. The error is only for a boot that
// could not be attempted; everything else is in the Boot, for Check.
func (m Machine) Run(ctx context.Context) (*Boot, error) {
	if m.QEMU == "" {
		var err error
		if m.QEMU, err = QEMUPath(); err != nil {
			return nil, err
		}
	}
	if m.MemoryMB == 0 {
		m.MemoryMB = 1024
	}
	if m.Timeout == 0 {
		m.Timeout = 10 * time.Minute
	}
	if err := os.MkdirAll(m.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	consolePath := filepath.Join(m.LogDir, "console.log")
	resultsPath := filepath.Join(m.LogDir, "results.log")

	// quiet keeps the console to warnings and worse, which Check looks for; the init's own
	// lines are still printed. mitigations=off only makes TCG faster.
	appendArgs := []string{"console=ttyS0", "panic=-1", "quiet", "mitigations=off", "no_timer_check", CmdlinePrefix + "config=" + m.Name}
	if m.LSM != "" {
		appendArgs = append(appendArgs, "lsm="+m.LSM)
	}
	appendArgs = append(appendArgs, m.Cmdline...)
	args := []string{
		// /dev/kvm exists on the build machines but KVM fails there; TCG works everywhere.
		"-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", fmt.Sprint(m.MemoryMB),
		// No default devices (VGA, NIC, floppy, CD): the guest needs two UARTs only.
		"-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
		"-kernel", m.Kernel, "-initrd", m.Initramfs,
		"-append", strings.Join(appendArgs, " "),
		"-serial", "file:" + consolePath,
		"-serial", "file:" + resultsPath,
	}
	b := &Boot{Machine: m, Args: append([]string{m.QEMU}, args...)}

	runCtx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, m.QEMU, args...)
	var stderr strings.Builder
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	b.Wall = time.Since(start)
	if runCtx.Err() != nil && ctx.Err() == nil {
		b.TimedOut = true
	}
	if err != nil {
		b.Err = fmt.Errorf("qemu: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	b.Console, _ = os.ReadFile(consolePath)
	b.Results, _ = os.ReadFile(resultsPath)
	if t, perr := ParseTranscript(b.Results); perr != nil {
		b.Err = errors.Join(b.Err, perr)
	} else {
		b.Transcript = t
	}
	return b, nil
}

// kernelTrouble matches console lines that fail a boot whatever the suites said.
var kernelTrouble = regexp.MustCompile(`Kernel panic|BUG:|Oops|general protection fault|WARNING: CPU:|Call Trace:|segfault at`)

// Expect is what Check requires of a boot beyond "every suite passed".
type Expect struct {
	Suites []string // names of the suites that must have run and passed, in order
	// BPFLSM says whether "bpf" must (true) or must not (false) be in the guest's
	// /sys/kernel/security/lsm.
	BPFLSM bool
}

// Check returns every reason the boot failed; none means it passed.
func (b *Boot) Check(want Expect) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if b.TimedOut {
		add("qemu was killed after %s", b.Machine.Timeout)
	} else if b.Err != nil {
		add("%v", b.Err)
	}
	for _, line := range strings.Split(string(b.Console), "\n") {
		if kernelTrouble.MatchString(line) {
			add("kernel console: %s", strings.TrimSpace(line))
		}
	}
	t := b.Transcript
	if t == nil {
		add("no results transcript")
		return problems
	}
	for _, e := range t.Errors {
		add("guest init: %s", e)
	}
	if t.Info == nil {
		add("the guest init never reported (no info marker)")
	} else {
		hasBPF := false
		for _, l := range strings.Split(t.Info.LSM, ",") {
			hasBPF = hasBPF || l == "bpf"
		}
		if hasBPF != want.BPFLSM {
			add("active LSMs %q: want bpf present=%v", t.Info.LSM, want.BPFLSM)
		}
		if t.Info.Config != b.Machine.Name {
			add("guest reports config %q, want %q", t.Info.Config, b.Machine.Name)
		}
	}
	for _, name := range want.Suites {
		s := t.Suite(name)
		switch {
		case s == nil:
			add("suite %s: never started", name)
		case !s.Ended:
			add("suite %s: no end marker (the guest died while it ran)", name)
		case s.Status != StatusPass:
			add("suite %s: %s (exit %d)%s", name, s.Status, s.Exit, errSuffix(s.Error))
		}
		if s != nil && strings.Contains(s.Output, "testing: warning: no tests to run") {
			add("suite %s: no tests to run (check its -test.run)", name)
		}
	}
	if len(t.Suites) != len(want.Suites) {
		var got []string
		for _, s := range t.Suites {
			got = append(got, s.Suite)
		}
		add("suites run: %v, want %v", got, want.Suites)
	}
	if !t.Done {
		add("no done marker: the guest did not finish its manifest")
	}
	return problems
}

// Skips lists the "--- SKIP" lines of every suite, so that a skip inside the VM is never
// silent.
func (b *Boot) Skips() []string {
	if b.Transcript == nil {
		return nil
	}
	var skips []string
	for _, s := range b.Transcript.Suites {
		lines := strings.Split(s.Output, "\n")
		for i, line := range lines {
			if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "--- SKIP") {
				reason := ""
				if i+1 < len(lines) {
					reason = strings.TrimSpace(lines[i+1])
				}
				skips = append(skips, fmt.Sprintf("%s: %s %s", s.Suite, trimmed, reason))
			}
		}
	}
	return skips
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

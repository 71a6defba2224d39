// Package sandbox holds dockwatch's seccomp profiles and installs them.
//
// Two profiles exist:
//
//   - "agent" (Agent) is put on the supervised user's processes by `dockwatch sandbox -- CMD`. It
//     allows everything except the syscalls that would let the agent get around the kernel watch
//     (tracing other processes, io_uring, bpf, mounts, user namespaces, ...).
//   - "daemon" (Daemon) is an allowlist the dockwatch daemon puts on itself once its programs are
//     attached; everything it does not need fails with EPERM.
//
// Filters are assembled with github.com/elastic/go-seccomp-bpf. That library only assembles for
// the architecture the binary runs on, and a syscall made through another ABI of the same CPU
// (int 0x80 on x86_64, which is AUDIT_ARCH_I386) falls through to its default action. A
// default-allow filter would therefore let `int 0x80; ptrace` pass. This package puts its own
// architecture check in front of the library's program: any syscall whose audit arch is not the
// native one kills the process. The library itself answers x32 syscalls (x86_64 numbers with
// bit 30 set) with ENOSYS.
//
// An unprivileged process can only install a filter after setting no_new_privs, and no_new_privs
// makes exec ignore set-user-ID and set-group-ID bits. The agent profile therefore does not combine
// with setgid socket access (the setgid docker CLI would run without the docker group); it is
// meant for group access, where the BPF gate is the barrier and these syscalls are its bypasses.
//
// Supported: x86_64 (amd64) and aarch64 (arm64). Other architectures are refused with
// ErrUnsupportedArch.
package sandbox

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ErrUnsupportedArch is returned for an architecture without a tested syscall table.
var ErrUnsupportedArch = errors.New("seccomp profiles are only built for amd64 and arm64")

// ErrUnknownProfile is returned by Lookup for a name that is not a profile.
var ErrUnknownProfile = errors.New("unknown sandbox profile")

// ActionKind is what the filter does with a matching syscall.
type ActionKind int

const (
	// Allow lets the syscall run.
	Allow ActionKind = iota
	// Errno fails the syscall with Action.Errno, without running it.
	Errno
	// KillProcess kills the whole process with SIGSYS.
	KillProcess
)

// Action is a filter verdict.
type Action struct {
	Kind  ActionKind
	Errno unix.Errno // for Kind == Errno
}

var (
	actAllow  = Action{Kind: Allow}
	actEPERM  = Action{Kind: Errno, Errno: unix.EPERM}
	actENOSYS = Action{Kind: Errno, Errno: unix.ENOSYS}
	actKill   = Action{Kind: KillProcess}
)

// String renders the action for --print: "allow", "errno EPERM", "kill_process".
func (a Action) String() string {
	switch a.Kind {
	case Allow:
		return "allow"
	case Errno:
		return "errno " + unix.ErrnoName(a.Errno)
	case KillProcess:
		return "kill_process"
	}
	return fmt.Sprintf("action(%d)", int(a.Kind))
}

// MarshalText makes actions readable in JSON.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

func (a Action) seccomp() (seccomp.Action, error) {
	switch a.Kind {
	case Allow:
		return seccomp.ActionAllow, nil
	case Errno:
		if a.Errno == 0 || a.Errno > 0xffff {
			return 0, fmt.Errorf("errno action needs an errno between 1 and 65535, got %d", int(a.Errno))
		}
		if a.Errno == unix.EPERM {
			// The library adds EPERM to a bare errno action, and only accepts a bare action as
			// a policy's default.
			return seccomp.ActionErrno, nil
		}
		return seccomp.ActionErrno | seccomp.Action(a.Errno), nil
	case KillProcess:
		return seccomp.ActionKillProcess, nil
	}
	return 0, fmt.Errorf("unknown action kind %d", int(a.Kind))
}

// ArgBits restricts a rule to calls by the bits of one argument: with Clear false the rule
// applies when argument Arg (0-based) has any of Bits set, with Clear true when it has none.
type ArgBits struct {
	Arg   uint32 `json:"arg"`
	Bits  uint64 `json:"bits"`
	Clear bool   `json:"clear,omitempty"`
	// Name names the bits for humans, e.g. "CLONE_NEWUSER".
	Name string `json:"name"`
}

func (w *ArgBits) operation() seccomp.Operation {
	if w.Clear {
		return seccomp.BitsNotSet
	}
	return seccomp.BitsSet
}

// Rule is one group of syscalls that share an action and a reason.
type Rule struct {
	// Why the rule exists; printed by `dockwatch sandbox --print`.
	Why      string   `json:"why"`
	Action   Action   `json:"action"`
	Syscalls []string `json:"syscalls"`
	// When, if set, makes the rule apply only to calls with these argument bits.
	// go-seccomp-bpf v1.6.0 does not reload the syscall number after it has compared an
	// argument, so a group after an argument check would compare the argument with syscall
	// numbers. Assemble therefore accepts at most one conditional rule, as the last rule.
	When *ArgBits `json:"when,omitempty"`
}

// Profile is a named seccomp profile. Rules are checked in order; the first match decides.
type Profile struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// NoNewPrivs is always set before the filter is loaded (an unprivileged process cannot load a
	// filter without it, and it keeps setuid binaries from shedding the filter's intent).
	NoNewPrivs bool `json:"no_new_privs"`
	// ForeignArch is the action for a syscall made through a non-native ABI (int 0x80).
	ForeignArch Action `json:"foreign_arch_action"`
	// Default is the action for a syscall no rule matches.
	Default Action `json:"default_action"`
	Rules   []Rule `json:"rules"`
}

// Names lists the profiles Lookup knows.
func Names() []string { return []string{"agent", "daemon"} }

// Lookup returns the profile with the given name.
func Lookup(name string) (Profile, error) {
	switch name {
	case "agent":
		return Agent(), nil
	case "daemon":
		return DaemonProfile(), nil
	}
	return Profile{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownProfile, name, strings.Join(Names(), ", "))
}

// nativeArch returns the syscall table of the running architecture, or ErrUnsupportedArch.
func nativeArch() (*arch.Info, error) {
	switch runtime.GOARCH {
	case "amd64", "arm64":
		return arch.GetInfo("")
	}
	return nil, fmt.Errorf("%w: running on %s", ErrUnsupportedArch, runtime.GOARCH)
}

// optionalSyscalls may be missing from a syscall table (legacy x86_64-only calls in the daemon
// allowlist, or calls newer than the table). Any other unknown name is an error.
var optionalSyscalls = map[string]bool{}

// Assemble compiles the profile for the running architecture into classic BPF.
func (p Profile) Assemble() ([]bpf.Instruction, error) {
	info, err := nativeArch()
	if err != nil {
		return nil, err
	}
	policy := seccomp.Policy{}
	if policy.DefaultAction, err = p.Default.seccomp(); err != nil {
		return nil, fmt.Errorf("profile %s: default action: %w", p.Name, err)
	}
	for i, r := range p.Rules {
		if r.When != nil && i != len(p.Rules)-1 {
			return nil, fmt.Errorf("profile %s: rule %d (%s): a rule with an argument condition must be the last rule", p.Name, i, r.Why)
		}
		act, err := r.Action.seccomp()
		if err != nil {
			return nil, fmt.Errorf("profile %s: rule %d (%s): %w", p.Name, i, r.Why, err)
		}
		g := seccomp.SyscallGroup{Action: act}
		for _, name := range r.Syscalls {
			if _, ok := info.SyscallNames[name]; !ok {
				if optionalSyscalls[name] {
					continue
				}
				return nil, fmt.Errorf("profile %s: rule %d (%s): syscall %q does not exist on %s", p.Name, i, r.Why, name, info.Name)
			}
			if r.When == nil {
				g.Names = append(g.Names, name)
				continue
			}
			g.NamesWithCondtions = append(g.NamesWithCondtions, seccomp.NameWithConditions{
				Name: name,
				Conditions: seccomp.ArgumentConditions{{
					Argument: r.When.Arg, Operation: r.When.operation(), Value: r.When.Bits,
				}},
			})
		}
		if len(g.Names)+len(g.NamesWithCondtions) > 0 {
			policy.Syscalls = append(policy.Syscalls, g)
		}
	}
	body, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("profile %s: assemble: %w", p.Name, err)
	}
	foreign, err := p.ForeignArch.seccomp()
	if err != nil {
		return nil, fmt.Errorf("profile %s: foreign arch action: %w", p.Name, err)
	}
	// seccomp_data.arch is at offset 4. The library's own arch check sends a foreign arch to the
	// default action, which for a default-allow profile would be a bypass, so decide it here.
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(foreign)},
	}
	return append(prog, body...), nil
}

// Apply sets no_new_privs and installs the profile's filter on every thread of the calling
// process (SECCOMP_FILTER_FLAG_TSYNC, which also copies no_new_privs to the other threads). It
// cannot be undone; children and exec'd programs inherit it.
func Apply(p Profile) error {
	insts, err := p.Assemble()
	if err != nil {
		return err
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return fmt.Errorf("profile %s: encode filter: %w", p.Name, err)
	}
	if len(raw) > 4096 { // BPF_MAXINSNS for classic BPF
		return fmt.Errorf("profile %s: filter has %d instructions, the kernel takes at most 4096", p.Name, len(raw))
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}

	// prctl(PR_SET_NO_NEW_PRIVS) and seccomp() act on the calling thread; keep them on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("load seccomp filter %s: %w", p.Name, errno)
	}
	if r != 0 {
		return fmt.Errorf("load seccomp filter %s: thread %d could not be synchronised", p.Name, r)
	}
	return nil
}

// ApplyDaemon installs DaemonProfile on the calling process. Call it after every BPF program is
// loaded and attached and every file and socket that needs privileges is open.
func ApplyDaemon() error { return Apply(DaemonProfile()) }

// Syscalls returns every syscall name the profile mentions, sorted.
func (p Profile) Syscalls() []string {
	var out []string
	for _, r := range p.Rules {
		out = append(out, r.Syscalls...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

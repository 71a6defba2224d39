package loader

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Enforcement modes (Options.Mode, [kernel] mode in the config).
const (
	// ModeAuto uses lsm mode when the BPF LSM is active and its programs load and attach, and
	// the tracepoint/cgroup fallback otherwise.
	ModeAuto = "auto"
	// ModeLSM gates connects with lsm/unix_stream_connect and guards trusted clients with
	// lsm/ptrace_access_check (bpf/lsm.h). Race-free; needs bpf in the kernel's lsm= list.
	ModeLSM = "lsm"
	// ModeTracepoint gates connects with cgroup/connect_unix or a sys_enter_connect path check,
	// plus the post-connect peer check with group access.
	ModeTracepoint = "tracepoint"
)

// GateLSM is the connect gate of lsm mode.
const GateLSM Gate = 100

// lsmPrograms are the programs of lsm mode after the exec hook, in attach order.
var lsmPrograms = []string{"dw_lsm_connect", "dw_lsm_ptrace"}

// lsmFile lists the active LSMs.
const lsmFile = "/sys/kernel/security/lsm"

// ErrNoBPFLSM is returned when lsm mode is asked for and the BPF LSM is not active.
var ErrNoBPFLSM = errors.New("BPF LSM not active: add bpf to lsm= on the kernel command line " +
	"(for example lsm=landlock,lockdown,yama,integrity,apparmor,bpf; NixOS: the dockwatch module does it)")

// ErrLSMRefused is returned when the BPF LSM is active but refuses to load LSM programs.
var ErrLSMRefused = errors.New("the BPF LSM is active but LSM programs do not load " +
	"(kernel lockdown=integrity refuses them on some machines; see the probe notes)")

// bpfLSMActive reads the active LSMs, mounting securityfs when it is missing. A successful
// attach of an LSM program proves nothing: without bpf in lsm= the kernel never calls it.
func bpfLSMActive() (bool, string) {
	data, err := os.ReadFile(lsmFile)
	if errors.Is(err, os.ErrNotExist) {
		if merr := unix.Mount("securityfs", "/sys/kernel/security", "securityfs", 0, ""); merr != nil {
			return false, fmt.Sprintf("bpf lsm: %s missing and mounting securityfs failed: %v", lsmFile, merr)
		}
		data, err = os.ReadFile(lsmFile)
	}
	if err != nil {
		return false, fmt.Sprintf("bpf lsm: %v", err)
	}
	list := strings.TrimSpace(string(data))
	for _, l := range strings.Split(list, ",") {
		if l == "bpf" {
			return true, ""
		}
	}
	return false, fmt.Sprintf("bpf lsm: not in the active LSMs (%s)", list)
}

// probeLSMProgram loads a trivial lsm/unix_stream_connect program (not attached), so that auto
// mode does not verify the whole object only to learn that LSM programs are refused (kernel
// lockdown=integrity on some machines does that with EPERM).
func probeLSMProgram(f *Features) bool {
	if !f.BTF {
		return false
	}
	// Return 0: since 6.10 the verifier refuses an LSM program that can return anything but 0
	// or a negative errno from an int hook.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "unix_stream_connect", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err == nil {
		err = prog.Close()
	}
	if err != nil {
		f.Notes = append(f.Notes, fmt.Sprintf("lsm programs: %v", err))
		return false
	}
	return true
}

// ParseMode checks a mode name; "" is auto.
func ParseMode(mode string) (string, error) {
	switch mode {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeLSM, ModeTracepoint:
		return mode, nil
	}
	return "", fmt.Errorf("mode %q: must be auto, lsm or tracepoint", mode)
}

// lsmPlan is the plan of lsm mode: the exec hook plus the two LSM programs. It needs what the
// exec hook needs and the BPF LSM; the syscall tracepoints and connect_unix are not used.
func lsmPlan(f Features, access string) (Plan, error) {
	if err := checkExecHook(f); err != nil {
		return Plan{}, err
	}
	if access != "group" && access != "setgid" {
		return Plan{}, fmt.Errorf("access %q: must be group or setgid", access)
	}
	if !f.LSMActive {
		return Plan{}, fmt.Errorf("%w: %w", ErrNotSupported, ErrNoBPFLSM)
	}
	if !f.LSM {
		return Plan{}, fmt.Errorf("%w: %w", ErrNotSupported, ErrLSMRefused)
	}
	return Plan{
		Mode:     ModeLSM,
		Gate:     GateLSM,
		Programs: append([]string{"dw_fork", "dw_exec"}, lsmPrograms...),
	}, nil
}

// ModePlans lists the plans Load tries, in order, for the features, the access mode and the
// configured enforcement mode. Auto with the BPF LSM active tries lsm mode first and falls back
// to the tracepoint plan when the LSM programs do not load or attach. Each plan says why its
// mode was chosen (ModeReason), for the log and `dockwatch status`.
func ModePlans(f Features, access, mode string) ([]Plan, error) {
	plans, err := modePlans(f, access, mode)
	for i := range plans {
		plans[i].noteGate(f)
	}
	return plans, err
}

// noteGate adds to the reason of a tracepoint plan why its connect gate is the syscall
// tracepoint although the kernel has cgroup/connect_unix.
func (p *Plan) noteGate(f Features) {
	if p.Gate == GateEnterConnect && f.ConnectUnixRefused != "" {
		p.ModeReason += "; connect gate sys_enter_connect: this kernel has cgroup/connect_unix, but its programs " +
			"may not use task storage (" + f.ConnectUnixRefused + ")"
	}
}

func modePlans(f Features, access, mode string) ([]Plan, error) {
	mode, err := ParseMode(mode)
	if err != nil {
		return nil, err
	}
	switch mode {
	case ModeLSM:
		p, err := lsmPlan(f, access)
		if err != nil {
			return nil, fmt.Errorf("mode lsm: %w", err)
		}
		p.ModeReason = "mode = \"lsm\" in the config"
		return []Plan{p}, nil
	case ModeTracepoint:
		p, err := MakePlan(f, access)
		if err != nil {
			return nil, fmt.Errorf("mode tracepoint: %w", err)
		}
		p.ModeReason = "mode = \"tracepoint\" in the config"
		return []Plan{p}, nil
	}
	lp, lerr := lsmPlan(f, access)
	fp, ferr := MakePlan(f, access)
	switch {
	case lerr == nil && ferr == nil:
		lp.ModeReason = "the BPF LSM is active"
		fp.ModeReason = "the BPF LSM is active, but lsm mode did not load" // Load adds why
		return []Plan{lp, fp}, nil
	case lerr == nil:
		lp.ModeReason = fmt.Sprintf("the BPF LSM is active (the fallback would not work: %v)", ferr)
		return []Plan{lp}, nil
	case ferr == nil && errors.Is(lerr, ErrLSMRefused):
		fp.ModeReason = "the BPF LSM is active but refuses LSM programs (lockdown?): tracepoint/cgroup fallback"
		return []Plan{fp}, nil
	case ferr == nil:
		fp.ModeReason = "the BPF LSM is not active (bpf is not in " + lsmFile + "): tracepoint/cgroup fallback"
		return []Plan{fp}, nil
	}
	if errors.Is(lerr, ErrNoBPFLSM) || errors.Is(lerr, ErrLSMRefused) {
		return nil, fmt.Errorf("%w; and no fallback: %w", lerr, ferr)
	}
	return nil, ferr
}

// attachLSM attaches an lsm mode program.
func attachLSM(prog *ebpf.Program, name string) (link.Link, string, error) {
	what := map[string]string{
		"dw_lsm_connect": "lsm/unix_stream_connect",
		"dw_lsm_ptrace":  "lsm/ptrace_access_check",
	}[name]
	l, err := link.AttachLSM(link.LSMOptions{Program: prog})
	return l, what, err
}

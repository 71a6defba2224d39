package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
)

// Features is what the running kernel offers dockwatch.
type Features struct {
	BTF         bool // kernel BTF (CO-RE, tp_btf)
	RingBuf     bool
	TaskStorage bool
	TpBTF       bool // tp_btf programs on sched_process_exec load
	ConnectUnix bool // the cgroup/connect_unix gate loads (kernel 6.7+; see ConnectUnixRefused)
	// ConnectUnixRefused says why cgroup/connect_unix programs load but the gate does not:
	// kernels 6.7 to 6.12 (Debian's 6.12) refuse bpf_task_storage_get in them.
	ConnectUnixRefused string
	SyscallTracepoints bool // syscalls/sys_{enter,exit}_connect exist in tracefs
	LSMActive          bool // bpf is in /sys/kernel/security/lsm (lsm.go)
	LSM                bool // the BPF LSM is usable: active, and an LSM program loads (lockdown may refuse it)
	Notes              []string
}

// ProbeFeatures asks the kernel. It mounts tracefs when it is missing, because the syscall
// tracepoints are only visible there.
func ProbeFeatures() Features {
	var f Features
	note := func(format string, args ...any) { f.Notes = append(f.Notes, fmt.Sprintf(format, args...)) }

	if _, err := btf.LoadKernelSpec(); err != nil {
		note("kernel btf: %v", err)
	} else {
		f.BTF = true
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		note("ring buffer: %v", err)
	} else {
		f.RingBuf = true
	}
	if err := features.HaveMapType(ebpf.TaskStorage); err != nil {
		note("task storage: %v", err)
	} else {
		f.TaskStorage = true
	}
	if f.BTF {
		if err := probeProgram(&ebpf.ProgramSpec{
			Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sched_process_exec",
		}); err != nil {
			note("tp_btf/sched_process_exec: %v", err)
		} else {
			f.TpBTF = true
		}
	}
	if err := probeProgram(&ebpf.ProgramSpec{
		Type: ebpf.CGroupSockAddr, AttachType: ebpf.AttachCgroupUnixConnect,
	}); err != nil {
		note("cgroup/connect_unix: %v", err)
	} else if err := probeConnectUnixGate(); err != nil {
		f.ConnectUnixRefused = err.Error()
		note("cgroup/connect_unix gate: %v", err)
	} else {
		f.ConnectUnix = true
	}
	if dir, err := tracefsDir(); err != nil {
		note("syscall tracepoints: %v", err)
	} else if _, err := os.Stat(filepath.Join(dir, "events/syscalls/sys_exit_connect")); err != nil {
		note("syscall tracepoints: %v", err)
	} else {
		f.SyscallTracepoints = true
	}
	if ok, why := bpfLSMActive(); ok {
		f.LSMActive = true
		f.LSM = probeLSMProgram(&f)
	} else {
		note("%s", why)
	}
	return f
}

// probeConnectUnixGate loads the real dw_connect_unix with the maps it uses (not attached).
// The program type alone proves too little: from 6.7 the kernel has cgroup/connect_unix, but
// until about 6.13 (Debian's 6.12 among them) a cgroup program may not call
// bpf_task_storage_get ("program of this type cannot use helper"), which the gate needs for
// the verdict. Such a kernel gets the sys_enter_connect gate instead.
func probeConnectUnixGate() error {
	spec, err := loadDockwatch()
	if err != nil {
		return fmt.Errorf("bpf spec: %w", err)
	}
	if m := spec.Maps["events"]; m != nil {
		m.MaxEntries = uint32(os.Getpagesize()) // the probe writes no events
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"dw_connect_unix"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		// The verifier's summary, without cilium/ebpf's assign prefix or the log.
		msg, _, _ := strings.Cut(err.Error(), "\n")
		if i := strings.Index(msg, "load program:"); i >= 0 {
			msg = msg[i:]
		}
		if i := strings.LastIndex(msg, " ("); i >= 0 && strings.HasSuffix(msg, "omitted)") {
			msg = msg[:i]
		}
		return errors.New(msg)
	}
	return objs.Prog.Close()
}

func probeProgram(spec *ebpf.ProgramSpec) error {
	spec.License = "GPL"
	spec.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return err
	}
	return prog.Close()
}

// Gate says how the connect gate runs.
type Gate int

const (
	// GateConnectUnix denies by path in cgroup/connect_unix (kernel 6.7+).
	GateConnectUnix Gate = iota + 1
	// GateEnterConnect kills at sys_enter_connect when the path is protected (older kernels).
	GateEnterConnect
)

func (g Gate) String() string {
	switch g {
	case GateConnectUnix:
		return "cgroup/connect_unix"
	case GateEnterConnect:
		return "tracepoint/syscalls/sys_enter_connect"
	case GateLSM:
		return "lsm/unix_stream_connect"
	}
	return "none"
}

// Plan is which programs a kernel with the given features gets, in attach order.
type Plan struct {
	Mode       string // ModeLSM or ModeTracepoint
	ModeReason string // why this mode (ModePlans, Load)
	Gate       Gate
	PostCheck  bool     // sys_enter/sys_exit_connect peer inode check
	Programs   []string // program names, attach order
}

// ErrNotSupported is returned when the kernel cannot enforce.
var ErrNotSupported = errors.New("kernel cannot enforce")

// MakePlan decides the programs from the features and the socket access mode ("group" or
// "setgid"). With group access the post-connect check is needed; with setgid the kernel's own
// permission check on the socket inode keeps untrusted processes off.
func MakePlan(f Features, access string) (Plan, error) {
	if err := checkExecHook(f); err != nil {
		return Plan{}, err
	}
	p := Plan{Mode: ModeTracepoint, Programs: []string{"dw_fork", "dw_exec"}}
	switch access {
	case "group":
		p.PostCheck = true
	case "setgid":
	default:
		return Plan{}, fmt.Errorf("access %q: must be group or setgid", access)
	}
	switch {
	case f.ConnectUnix:
		p.Gate = GateConnectUnix
		p.Programs = append(p.Programs, "dw_connect_unix")
	case f.SyscallTracepoints:
		p.Gate = GateEnterConnect
	default:
		return Plan{}, fmt.Errorf("%w: no connect gate: neither cgroup/connect_unix (kernel 6.7+) nor syscall tracepoints", ErrNotSupported)
	}
	if p.PostCheck && !f.SyscallTracepoints {
		return Plan{}, fmt.Errorf("%w: group access needs the syscall tracepoints for the post-connect check; use access = \"setgid\"", ErrNotSupported)
	}
	if p.PostCheck || p.Gate == GateEnterConnect {
		p.Programs = append(p.Programs, "dw_enter_connect")
	}
	if p.PostCheck {
		p.Programs = append(p.Programs, "dw_exit_connect")
	}
	return p, nil
}

// checkExecHook says what the kernel lacks for the exec hook, which every mode needs.
func checkExecHook(f Features) error {
	var missing []string
	for _, req := range []struct {
		ok   bool
		name string
	}{{f.BTF, "kernel BTF"}, {f.RingBuf, "BPF ring buffer"}, {f.TaskStorage, "BPF task storage"},
		{f.TpBTF, "tp_btf programs"}} {
		if !req.ok {
			missing = append(missing, req.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrNotSupported, strings.Join(missing, ", "))
	}
	return nil
}

package events

import (
	"fmt"
	"strings"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// RecordTamper is a supervised process's ptrace-class access to a trusted client, seen by
// lsm/ptrace_access_check (EVENT_TAMPER in bpf/lsm.h). The event's process is the tracer;
// Sock.Ino holds the target's tgid and Sock.Dev the ptrace mode it asked for; Bin and Verdict
// are the target's.
const RecordTamper uint32 = 3

// FlagTamperedEnv marks an exec of a trusted client that was made BLOCK because its environment
// sets LD_PRELOAD, LD_AUDIT or LD_LIBRARY_PATH, or is too long to check (EVENT_F_TAMPERED_ENV).
const FlagTamperedEnv uint8 = 64

// Rules of the anti-tamper events.
const (
	RulePtraceClient = "ptrace-client"
	RuleTamperedEnv  = "tampered-env"
)

// Loader variables that run foreign code inside a process; the exec hook looks for these.
var tamperVars = []string{"LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"}

// ptrace_may_access mode bits (include/linux/ptrace.h).
var ptraceModes = []struct {
	bit  uint32
	name string
}{{0x01, "READ"}, {0x02, "ATTACH"}, {0x04, "NOAUDIT"}, {0x08, "FSCREDS"}, {0x10, "REALCREDS"}}

// ptraceModeName spells a mode as the kernel's PTRACE_MODE_* names.
func ptraceModeName(mode uint32) string {
	var names []string
	for _, m := range ptraceModes {
		if mode&m.bit != 0 {
			names = append(names, "PTRACE_MODE_"+m.name)
			mode &^= m.bit
		}
	}
	if mode != 0 || len(names) == 0 {
		names = append(names, fmt.Sprintf("%#x", mode))
	}
	return strings.Join(names, "|")
}

// tamper is the event of a ptrace-class access to a trusted client: denied, or let through
// and reported in audit mode. Its verdict is block (audit in audit mode), so it alerts like a
// blocked command.
func (p *Processor) tamper(r Record) Event {
	ev := p.base(r, KindTamper)
	ev.Rule = RulePtraceClient
	ev.Verdict = "block"
	if r.Flags&FlagAudit != 0 {
		ev.Verdict = "audit"
	}
	ev.Exe = p.exePath(int(r.Tgid))
	target := int(r.Sock.Ino)
	what := "a trusted client"
	if r.Bin != BinNone {
		ev.Binary = policy.Binary(r.Bin).String()
		what = "trusted " + ev.Binary + " client"
	}
	targetExe := p.exePath(target)
	if targetExe == "" {
		targetExe = "exited"
	}
	outcome := "denied (EPERM)"
	if ev.Verdict == "audit" {
		outcome = "allowed: audit only"
	}
	ev.Reason = fmt.Sprintf("%s access to %s pid %d (%s, its verdict %s): %s; ptrace, /proc/PID/mem, "+
		"process_vm_readv/writev and pidfd_getfd all ask for it", ptraceModeName(uint32(r.Sock.Dev)), what, target,
		targetExe, verdictName(r.Verdict), outcome)
	return ev
}

// tamperedEnv explains an exec the kernel made BLOCK for its environment. It is no divergence:
// the classifier's result for the argv stays in the record, and Go agrees with the kernel that
// the environment overrides it. The record does not say which variable it found.
func (p *Processor) tamperedEnv(r Record, ev Event, tables *policy.Tables) Event {
	ev.Rule = RuleTamperedEnv
	if tables != nil && !ev.ArgvTruncated {
		ev.Command = tables.Explain(policy.Binary(r.Bin), r.Argv, r.Result).Command
	}
	ev.Reason = fmt.Sprintf("the trusted client's environment sets %s (or is too long to check): "+
		"foreign code would run inside the vetted client", strings.Join(tamperVars, ", "))
	return ev
}

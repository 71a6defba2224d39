package events

import "fmt"

// FlagSetgidExec marks an exec killed because a process holding a protected socket's group
// (from the setgid client, without membership) ran a binary that is neither a trusted client
// nor a configured helper (EVENT_F_SETGID_EXEC in bpf/setgid.h). The record's Path is the
// file name exec was given and Sock is the parent's executable.
const FlagSetgidExec uint8 = 32

// RuleSetgidUntrustedExec is the rule of those kills.
const RuleSetgidUntrustedExec = "setgid-untrusted-exec"

func (p *Processor) setgidExec(r Record, ev Event) Event {
	ev.Rule = RuleSetgidUntrustedExec
	name := r.Path
	if name == "" {
		name = ev.Exe
	}
	parent := p.Clients[r.Sock]
	if parent == "" {
		parent = p.exePath(int(r.Ppid))
	}
	if parent == "" {
		parent = fmt.Sprintf("dev %d:%d ino %d", r.Sock.Dev>>20, r.Sock.Dev&(1<<20-1), r.Sock.Ino)
	}
	ev.Reason = fmt.Sprintf("%s (%s) is not a trusted client or helper, and its parent %d (%s) gave it the docker socket's group: "+
		"killed before it ran", name, ev.Exe, r.Ppid, parent)
	return ev
}

// Package events turns kernel records into schema v1 events, gives every exec a second opinion
// from the Go classifier, and kills what the kernel let through by mistake.
package events

import (
	"time"
)

// SchemaVersion is the "v" of every event.
const SchemaVersion = 1

// Kinds.
const (
	KindExec       = "exec"
	KindConnect    = "connect"
	KindTamper     = "tamper"
	KindDivergence = "divergence"
	KindDaemon     = "daemon"
)

// Actions.
const (
	ActionKilled = "killed"
	ActionDenied = "denied"
	ActionNone   = "none"
)

// Event is one schema v1 event, written as one JSON line.
type Event struct {
	V             int       `json:"v"`
	Time          time.Time `json:"time"`
	Seq           uint64    `json:"seq"`
	Kind          string    `json:"kind"`
	Verdict       string    `json:"verdict,omitempty"` // allow|block|audit|not-client|undecided
	Action        string    `json:"action"`            // killed|denied|none
	Rule          string    `json:"rule,omitempty"`    // blocked-subcommand|escape-flags|unknown|ptraced|protected-socket|tampered-env|ptrace-client|setgid-untrusted-exec
	Command       string    `json:"command,omitempty"` // resolved command path, e.g. "container exec"
	Reason        string    `json:"reason,omitempty"`
	Argv          []string  `json:"argv,omitempty"`
	ArgvTruncated bool      `json:"argv_truncated,omitempty"`
	Pid           int       `json:"pid,omitempty"`
	Ppid          int       `json:"ppid,omitempty"`
	UID           *uint32   `json:"uid,omitempty"`
	User          string    `json:"user,omitempty"`
	Exe           string    `json:"exe,omitempty"`
	Mode          string    `json:"mode,omitempty"` // enforcement mode: lsm|tracepoint
	Binary        string    `json:"binary,omitempty"`
	Socket        string    `json:"socket,omitempty"`         // connect: the path given, or the peer's dev:ino
	Kernel        string    `json:"kernel_verdict,omitempty"` // divergence: what BPF decided
	Message       string    `json:"message,omitempty"`        // daemon events
}

func u32p(v uint32) *uint32 { return &v }

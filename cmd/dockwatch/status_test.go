package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestPrintStatus: the text status names the mode, why, and the self seccomp state.
func TestPrintStatus(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, Status{Mode: "lsm", ModeReason: "the BPF LSM is active", SelfSeccomp: "on",
		Gate: "lsm/unix_stream_connect", PolicyMode: "enforce", Access: "setgid"})
	out := b.String()
	for _, want := range []string{
		"mode             lsm (the BPF LSM is active)\n",
		"self seccomp     on\n",
		"gate lsm/unix_stream_connect",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status text lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printStatus(&b, Status{Mode: "tracepoint", ModeReason: "x"})
	if strings.Contains(b.String(), "self seccomp") {
		t.Errorf("a status without the self seccomp state prints it:\n%s", b.String())
	}
}

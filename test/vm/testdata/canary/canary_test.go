// Package canary fails on purpose. TestVMMatrixSelfCheck runs it inside a VM to prove that the
// harness reports a failing suite and a guest that dies mid-suite. It lives under testdata so
// that `go test ./...` never runs it.
package canary

import (
	"syscall"
	"testing"
)

func TestFail(t *testing.T) {
	t.Fatal("deliberate failure: the VM harness must report this suite as FAIL")
}

// TestPowerOff ends the VM from inside a suite, as a kernel crash would: no end marker, no
// done marker.
func TestPowerOff(t *testing.T) {
	syscall.Sync()
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		t.Fatalf("power off: %v", err)
	}
	select {}
}

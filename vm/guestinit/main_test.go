package main

import (
	"slices"
	"testing"
)

func TestBaseEnv(t *testing.T) {
	env := baseEnv([]string{"console=ttyS0", "dwvm.config=6.1-lsm", "dwvm.expect_bpf_lsm=1", "dwvm.a.b-c=x=y", "lsm=bpf"})
	for _, want := range []string{"DWVM_CONFIG=6.1-lsm", "DWVM_EXPECT_BPF_LSM=1", "DWVM_A_B_C=x=y", "DOCKWATCH_VM=1", "TMPDIR=/tmp"} {
		if !slices.Contains(env, want) {
			t.Errorf("env misses %s: %q", want, env)
		}
	}
	for _, e := range env {
		if e == "LSM=bpf" || e == "CONSOLE=ttyS0" {
			t.Errorf("kernel option leaked into the environment: %s", e)
		}
	}
	if got := lookupEnv(env, "DWVM_CONFIG"); got != "6.1-lsm" {
		t.Errorf("lookupEnv = %q", got)
	}
}

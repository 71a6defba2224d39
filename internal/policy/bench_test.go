package policy_test

import (
	"fmt"
	"testing"

	"github.com/dockwatch/dockwatch/bench/argvshape"
	"github.com/dockwatch/dockwatch/internal/policy"
)

// The bench shapes fill argv up to the classifier's limits, so they must be the same limits.
func TestBenchShapesAtLimits(t *testing.T) {
	if argvshape.MaxArgvBytes != policy.MaxArgvBytes || argvshape.MaxTokens != policy.MaxTokens {
		t.Fatalf("argvshape limits %d B/%d tokens, policy %d B/%d tokens",
			argvshape.MaxArgvBytes, argvshape.MaxTokens, policy.MaxArgvBytes, policy.MaxTokens)
	}
	tab := compileDefault(t)
	for _, s := range argvshape.LimitShapes {
		argv := s.AtLimit()
		if n := argvshape.Bytes(argv); n > policy.MaxArgvBytes || n < policy.MaxArgvBytes-200 || len(argv) < policy.MaxTokens-1 {
			t.Errorf("shape %s: %d bytes, %d tokens: not at the limits", s.Name, n, len(argv))
		}
		if r := tab.Eval(policy.BinDocker, argv); r.Verdict != policy.VerdictAllow {
			t.Errorf("shape %s: %v, want allow (a verdict before the end would not be the worst case)", s.Name, r)
		}
		if r := tab.Eval(policy.BinDocker, s.AtLimit("--privileged", "busybox")); r.Verdict != policy.VerdictBlock {
			t.Errorf("shape %s with --privileged: %v, want block", s.Name, r)
		}
	}
}

// BenchmarkEval is the Go classifier (the userspace second opinion) on docker run argv of about
// 50 B, 1 KiB and 4 KiB, and on every argv shape at the limits.
func BenchmarkEval(b *testing.B) {
	tab := compileDefault(b)
	type input struct {
		name string
		argv []string
	}
	var inputs []input
	for _, size := range []int{50, 1024, 4096} {
		inputs = append(inputs, input{fmt.Sprintf("%dB", size), argvshape.Sized(size)})
	}
	for _, s := range argvshape.LimitShapes {
		inputs = append(inputs, input{"limit-" + s.Name, s.AtLimit()})
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			if r := tab.Eval(policy.BinDocker, in.argv); r.Verdict != policy.VerdictAllow {
				b.Fatalf("%v, want allow", r)
			}
			b.ReportAllocs()
			for b.Loop() {
				tab.Eval(policy.BinDocker, in.argv)
			}
			b.ReportMetric(float64(argvshape.Bytes(in.argv)), "argv-bytes")
			b.ReportMetric(float64(len(in.argv)), "tokens")
		})
	}
}

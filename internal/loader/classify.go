package loader

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// The SEC("syscall") wrapper around bpf/classify.h. Regenerate with `make generate`
// (BPF2GO_CC=clang-16 BPF2GO_STRIP=llvm-strip-16 go generate ./...).
//go:generate go tool bpf2go -target bpfel -type classify_test_ctx classifyTest ../../bpf/tests/classify_test.bpf.c -- -O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -I../../bpf

// testArgvBytes is the size of the wrapper's argv input (TEST_ARGV_BYTES in C).
const testArgvBytes = 2 * policy.MaxArgvBytes

// ErrArgvTooLong means an argv does not fit the test wrapper's input buffer.
var ErrArgvTooLong = errors.New("argv does not fit the test input")

// TestClassifier runs the BPF classifier (bpf/classify.h) on argv from Go through
// BPF_PROG_TEST_RUN, with the same argv reader and interpreter as the exec hook.
type TestClassifier struct {
	objs classifyTestObjects
}

// ClassifyRun is the outcome of one run of the BPF classifier.
type ClassifyRun struct {
	Result    policy.Result
	Tokens    int  // argv elements the reader stored
	Truncated bool // argv over MAX_ARGV_BYTES or MAX_TOKENS
	Fault     bool // the reader could not read argv
	Elapsed   time.Duration
}

// NewTestClassifier loads the wrapper program and its (empty) table maps.
func NewTestClassifier() (*TestClassifier, error) {
	c := &TestClassifier{}
	if err := loadClassifyTestObjects(&c.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load classifier test program: %+v", ve)
		}
		return nil, fmt.Errorf("load classifier test program: %w", err)
	}
	return c, nil
}

// Close releases the program and maps.
func (c *TestClassifier) Close() error { return c.objs.Close() }

// Program is the SEC("syscall") wrapper program.
func (c *TestClassifier) Program() *ebpf.Program { return c.objs.ClassifyTest }

// Maps are the wrapper's table maps, for WriteTables.
func (c *TestClassifier) Maps() TableMaps {
	return TableMaps{
		Lexicon:  c.objs.Lexicon,
		Nodes:    c.objs.Nodes,
		Effects:  c.objs.Effects,
		Patterns: c.objs.Patterns,
		Rules:    c.objs.Rules,
		Entries:  c.objs.Entries,
		Gen:      c.objs.TableGen,
	}
}

// JoinArgv lays argv out as the kernel does at mm->arg_start: each element NUL terminated.
func JoinArgv(argv []string) []byte {
	n := 0
	for _, a := range argv {
		n += len(a) + 1
	}
	raw := make([]byte, 0, n)
	for _, a := range argv {
		raw = append(raw, a...)
		raw = append(raw, 0)
	}
	return raw
}

// Classify classifies argv as an argv of binary bin.
func (c *TestClassifier) Classify(bin policy.Binary, argv []string) (ClassifyRun, error) {
	return c.Run(bin, JoinArgv(argv), 1)
}

// Run classifies raw (NUL separated argv, as at mm->arg_start) repeat times in one program run
// and reports the last result and the time of all runs.
func (c *TestClassifier) Run(bin policy.Binary, raw []byte, repeat uint32) (ClassifyRun, error) {
	if len(raw) > testArgvBytes {
		return ClassifyRun{}, fmt.Errorf("%w: %d bytes, at most %d", ErrArgvTooLong, len(raw), testArgvBytes)
	}
	var in classifyTestTestArgv
	copy(in.Data[:], raw)
	if err := c.objs.TestArgv.Put(uint32(0), &in); err != nil {
		return ClassifyRun{}, fmt.Errorf("write test argv: %w", err)
	}
	ctx := classifyTestClassifyTestCtx{Bin: uint32(bin), Len: uint32(len(raw)), Repeat: repeat}
	ret, err := c.objs.ClassifyTest.Run(&ebpf.RunOptions{Context: &ctx, ContextOut: &ctx})
	if err != nil {
		return ClassifyRun{}, fmt.Errorf("run classifier test program: %w", err)
	}
	if ret != 0 {
		return ClassifyRun{}, fmt.Errorf("classifier test program returned %d", ret)
	}
	r := ctx.Res
	return ClassifyRun{
		Result: policy.Result{
			Verdict: policy.Verdict(r.Verdict), Rule: policy.Rule(r.Rule), Help: r.Help,
			Node: r.Node, Effect: r.Effect, Token: r.Token,
		},
		Tokens:    int(ctx.Ntok),
		Truncated: ctx.Truncated != 0,
		Fault:     ctx.Fault != 0,
		Elapsed:   time.Duration(ctx.Ns),
	}, nil
}

// Package argvshape builds docker argv of chosen sizes for the classifier benchmarks: plausible
// `docker run` lines of a given byte size, and argv at the classifier's limits (the most
// expensive input the tables accept before a verdict becomes UNDECIDED).
//
// It imports nothing of dockwatch, so the policy benchmarks and the bench driver share it.
package argvshape

import (
	"fmt"
	"strings"
)

// The classifier's limits (policy.MaxArgvBytes, policy.MaxTokens); a test in internal/policy
// keeps them equal.
const (
	MaxArgvBytes = 8192 // argv bytes including every NUL
	MaxTokens    = 256  // argv elements including argv[0]
)

// Bytes is the size of argv at mm->arg_start: every element NUL terminated.
func Bytes(argv []string) int {
	n := 0
	for _, a := range argv {
		n += len(a) + 1
	}
	return n
}

// Sized is a `docker run` argv of at most size bytes (and close to it), with tail as the last
// elements (the image and command; nil means "busybox"). It grows by `-e NAME=value` pairs.
func Sized(size int, tail ...string) []string {
	if tail == nil {
		tail = []string{"busybox"}
	}
	head := []string{"docker", "run", "--rm", "-v", "/srv/data:/data"}
	var env []string
	build := func() []string {
		return append(append(append([]string{}, head...), env...), tail...)
	}
	for i := 0; ; i++ {
		pair := []string{"-e", fmt.Sprintf("VAR%d=%s", i, strings.Repeat("v", 30))}
		if Bytes(build())+Bytes(pair) > size {
			break
		}
		env = append(env, pair...)
	}
	return build()
}

// Shape is one argv layout filled up to the limits.
type Shape struct {
	Name string
	What string
	// unit returns the tokens repeated to fill argv; pad is extra bytes to spread over them.
	unit func(i int, pad string) []string
}

// LimitShapes are the layouts tried for the worst case: each repeats one kind of option until
// argv has MaxTokens elements and close to MaxArgvBytes bytes. Which is slowest depends on the
// interpreter, so the benchmarks measure them all and report the slowest.
var LimitShapes = []Shape{
	{"env", "-e NAME=value pairs (flag lookup, value skipped)", func(i int, pad string) []string {
		return []string{"-e", fmt.Sprintf("V%d=%s", i, pad)}
	}},
	{"bind", "-v SRC:DST pairs (every bind source matched against the sensitive paths)", func(i int, pad string) []string {
		return []string{"-v", fmt.Sprintf("/srv/%s%d:/mnt/m%d", pad, i, i)}
	}},
	{"mount", "--mount type=bind,... pairs (key=value parsing and path matching)", func(i int, pad string) []string {
		return []string{"--mount", fmt.Sprintf("type=bind,source=/srv/%s%d,target=/m%d", pad, i, i)}
	}},
	{"secopt", "--security-opt values (matched against the unconfined patterns)", func(i int, pad string) []string {
		return []string{"--security-opt", fmt.Sprintf("label=level:s0:c%d%s", i, pad)}
	}},
	{"cluster", "-itd... shorthand clusters (one lexicon lookup per letter)", func(i int, pad string) []string {
		return []string{"-" + strings.Repeat("it", 16)[:min(31, 20+len(pad))]}
	}},
}

// AtLimit is argv of shape s for docker run with tail as its last elements: MaxTokens elements
// (or as many whole units as fit) and as close to MaxArgvBytes bytes as the unit allows.
func (s Shape) AtLimit(tail ...string) []string {
	if tail == nil {
		tail = []string{"busybox"}
	}
	head := []string{"docker", "run"}
	build := func(padLen int) []string {
		argv := append([]string{}, head...)
		pad := strings.Repeat("p", padLen)
		for i := 0; ; i++ {
			u := s.unit(i, pad)
			if len(argv)+len(u)+len(tail) > MaxTokens {
				break
			}
			argv = append(argv, u...)
		}
		return append(argv, tail...)
	}
	best := build(0)
	for padLen := 1; padLen < 256; padLen++ {
		argv := build(padLen)
		if Bytes(argv) > MaxArgvBytes {
			break
		}
		best = argv
	}
	return best
}

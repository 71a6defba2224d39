// Command testsummary reads `go test -json` on stdin and prints a short report: the full output
// of every failed test, every skipped test with its reason, build errors, lines a test marks
// "[report] ", one line per package like plain `go test`, and totals. It exits 1 when anything failed.
//
// Usage: go test -json ./... | go run ./.ci/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	Elapsed    float64
	ImportPath string // build-output events
}

type key struct{ pkg, test string }

func main() {
	os.Exit(summarize(os.Stdin, os.Stdout))
}

func summarize(in io.Reader, out io.Writer) int {
	output := map[key][]string{}
	var passed, failed, skipped int
	var skips, fails []string
	failedPkgs := map[string]bool{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not test2json output (for example a go vet or build message): pass it through.
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(out, e.Output)
		case "build-fail":
			pkg, _, _ := strings.Cut(e.ImportPath, " ") // "pkg [pkg.test]"
			failedPkgs[pkg] = true
		case "output":
			output[k] = append(output[k], e.Output)
			// Figures a test wants in the CI log whatever the outcome (the VM matrix wall time).
			if _, rest, ok := strings.Cut(e.Output, "[report] "); ok {
				fmt.Fprintf(out, "%s: %s", short(e.Package), rest)
			}
		case "pass":
			if e.Test != "" {
				passed++
			} else {
				fmt.Fprintf(out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, k)
		case "skip":
			if e.Test != "" {
				skipped++
				reason := skipReason(output[k])
				skips = append(skips, fmt.Sprintf("%s %s: %s", short(e.Package), e.Test, reason))
				fmt.Fprintf(out, "--- SKIP: %s (%s): %s\n", e.Test, short(e.Package), reason)
			} else {
				// A package without tests, or one whose TestMain skipped everything.
				fmt.Fprintf(out, "?   \t%s\t[no test files]\n", e.Package)
			}
			delete(output, k)
		case "fail":
			if e.Test != "" {
				failed++
				fails = append(fails, short(e.Package)+" "+e.Test)
				fmt.Fprintf(out, "--- FAIL: %s (%s)\n", e.Test, short(e.Package))
				for _, l := range output[k] {
					if !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- FAIL: "+e.Test+" ") {
						fmt.Fprint(out, "    | ", l)
					}
				}
			} else {
				failedPkgs[e.Package] = true
				// Package-level output (panics, timeouts, TestMain failures) has no Test.
				for _, l := range output[k] {
					t := strings.TrimSpace(l)
					if !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- ") && t != "FAIL" && !strings.HasPrefix(t, "FAIL\t") {
						fmt.Fprint(out, "    | ", l)
					}
				}
				fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, k)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(out, "testsummary: read: %v\n", err)
		return 1
	}
	if len(skips) > 0 {
		fmt.Fprintf(out, "skipped:\n")
		for _, s := range skips {
			fmt.Fprintf(out, "  %s\n", s)
		}
	}
	if len(fails) > 0 {
		fmt.Fprintf(out, "failed:\n")
		for _, s := range fails {
			fmt.Fprintf(out, "  %s\n", s)
		}
	}
	// The closing line is the plain "N passed, N failed, N skipped" that CI reads; a package that
	// failed without a failing test (a build error, a panic in TestMain) counts as one failure.
	failedTotal := failed
	if failedTotal == 0 {
		failedTotal = len(failedPkgs)
	}
	fmt.Fprintf(out, "\n%d packages failed\n%d passed, %d failed, %d skipped\n", len(failedPkgs), passed, failedTotal, skipped)
	if failedTotal > 0 {
		return 1
	}
	return 0
}

// skipReason is the last log line of a skipped test (t.Skipf's message), without the file:line.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			continue
		}
		return l
	}
	return "(no reason given)"
}

func short(pkg string) string {
	return strings.TrimPrefix(pkg, "github.com/dockwatch/dockwatch/")
}

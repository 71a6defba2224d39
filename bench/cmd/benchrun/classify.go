package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dockwatch/dockwatch/bench/argvshape"
	"github.com/dockwatch/dockwatch/internal/config"
	"github.com/dockwatch/dockwatch/internal/loader"
	"github.com/dockwatch/dockwatch/internal/policy"
)

// argvCase is one classifier input.
type argvCase struct {
	name string // 50B, 1KiB, 4KiB, limit-<shape>
	what string
	argv []string // allowed: the classifier reads it to the end
}

func argvCases() []argvCase {
	cases := []argvCase{
		{"50B", "docker run --rm -v /srv/data:/data busybox", argvshape.Sized(50)},
		{"1KiB", "docker run with -e pairs", argvshape.Sized(1024)},
		{"4KiB", "docker run with -e pairs", argvshape.Sized(4096)},
	}
	for _, s := range argvshape.LimitShapes {
		cases = append(cases, argvCase{"limit-" + s.Name, s.What, s.AtLimit()})
	}
	return cases
}

// blocking is the case's argv made to end in a block: the hook reads and classifies all of it,
// then kills the process before it runs, so the exec loop costs no docker run.
func (c argvCase) blocking() []string {
	if strings.HasPrefix(c.name, "limit-") {
		for _, s := range argvshape.LimitShapes {
			if "limit-"+s.Name == c.name {
				return s.AtLimit("--privileged", "busybox")
			}
		}
	}
	a := slices.Clone(c.argv)
	return append(a[:len(a)-1], "--privileged", "busybox")
}

// progRunSamples times single runs of the BPF classifier (the exec hook's argv reader and
// interpreter, through BPF_PROG_TEST_RUN) on each case, n runs each, checking each verdict
// against the Go classifier.
func progRunSamples(cfgPath string, cases []argvCase, n int) (map[string][]float64, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	tab, err := cfg.Compile()
	if err != nil {
		return nil, err
	}
	c, err := loader.NewTestClassifier()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := loader.WriteTables(c.Maps(), tab); err != nil {
		return nil, err
	}
	out := map[string][]float64{}
	for _, tc := range cases {
		want := tab.Eval(policy.BinDocker, tc.argv)
		raw := loader.JoinArgv(tc.argv)
		samples := make([]float64, 0, n)
		for range n {
			r, err := c.Run(policy.BinDocker, raw, 1)
			if err != nil {
				return nil, fmt.Errorf("classify %s: %w", tc.name, err)
			}
			if r.Result != want {
				return nil, fmt.Errorf("classify %s: bpf %+v, go %+v", tc.name, r.Result, want)
			}
			samples = append(samples, float64(r.Elapsed))
		}
		out[tc.name] = samples
	}
	return out, nil
}

// goBench runs `go test -bench` and returns, per benchmark name (without the -GOMAXPROCS
// suffix) and unit, the values of each -count run.
func goBench(ctx context.Context, goCmd, dir string, args ...string) (map[string]map[string][]float64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"test", "-run", "^$"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	res := map[string]map[string][]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		if res[name] == nil {
			res[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, perr := strconv.ParseFloat(f[i], 64)
			if perr != nil {
				break
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	if err != nil {
		tail := string(out)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return res, "go test " + strings.Join(args, " "), fmt.Errorf("go test %s: %w\n%s", strings.Join(args, " "), err, tail)
	}
	return res, "go test -run '^$' " + strings.Join(args, " "), nil
}

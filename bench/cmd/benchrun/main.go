// Command benchrun is `make bench`: it measures what dockwatch costs and writes BENCHMARKS.md.
//
// Every with/without figure comes from the same run: each round visits the states "off" (no
// dockwatch), "group" and "setgid" (dockwatch run with that access mode) in a rotating order,
// runs every workload in each, and the report gives medians over the rounds and the ratio to
// the "off" median. The classifier figures come from BPF_PROG_TEST_RUN, bpf_stats on the real
// exec hook and Go's testing.B.
//
// It needs root, the docker CLI and busybox-static, and builds its workload program with Go.
// It creates throwaway users and a group, and removes them (and everything else it made) when it
// ends, also on SIGINT/SIGTERM.
//
// Usage: benchrun [-dockwatch bin/dockwatch] [-o BENCHMARKS.md] [-rounds 5] [-only REGEXP]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/dockwatch/dockwatch/internal/testutil/gobuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command line.
type options struct {
	dockwatch string
	out       string
	rounds    int
	only      *regexp.Regexp
	goCmd     string
	history   int
	cmdline   string // how to rerun one row
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var only string
	fs.StringVar(&o.dockwatch, "dockwatch", "bin/dockwatch", "the dockwatch `binary` to benchmark")
	fs.StringVar(&o.out, "o", "BENCHMARKS.md", "write the report to `FILE` (- for stdout)")
	fs.IntVar(&o.rounds, "rounds", 7, "rounds of the with/without states")
	fs.StringVar(&only, "only", "", "run only the rows whose id matches `REGEXP`")
	fs.StringVar(&o.goCmd, "go", "go", "the go `command`, for building the workload and the testing.B benchmarks")
	fs.IntVar(&o.history, "history", 0, "set [events] history to `N` in the daemon's config (0: dockwatch's default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.rounds < 1 {
		fmt.Fprintln(stderr, "benchrun: no arguments are taken and -rounds must be at least 1")
		return 2
	}
	var err error
	if o.only, err = regexp.Compile(only); err != nil {
		fmt.Fprintf(stderr, "benchrun: -only: %v\n", err)
		return 2
	}
	if err := bench(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "benchrun: %v\n", err)
		return 1
	}
	return 0
}

// results holds every measurement: values[row][state] over the rounds.
type results struct {
	values  map[string]map[string][]float64
	notes   []string
	samples map[string][]float64 // prog.Run single-run times per argv case
	goEval  map[string]map[string][]float64
	bpfB    map[string]map[string][]float64
	goCmds  map[string]string
	machine machine
	started time.Time
	elapsed time.Duration
	opts    options
	cases   []argvCase
}

func (r *results) add(row, state string, v float64) {
	if r.values[row] == nil {
		r.values[row] = map[string][]float64{}
	}
	r.values[row][state] = append(r.values[row][state], v)
}

func (r *results) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func bench(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it loads BPF programs and creates throwaway users")
	}
	root, err := gobuild.ModuleRoot()
	if err != nil {
		return err
	}
	if o.dockwatch, err = filepath.Abs(o.dockwatch); err != nil {
		return err
	}
	if _, err := os.Stat(o.dockwatch); err != nil {
		return fmt.Errorf("dockwatch binary: %w (run `make build` first)", err)
	}
	dockerPath, err := exec.LookPath("docker")
	if err != nil {
		return fmt.Errorf("the docker CLI: %w", err)
	}
	busyboxPath, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox-static: %w", err)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "benchrun: "+format+"\n", args...) }

	res := &results{values: map[string]map[string][]float64{}, goCmds: map[string]string{}, started: time.Now(), opts: o, cases: argvCases()}
	res.machine = probeMachine(dockerPath, o.dockwatch)

	if o.only.MatchString("go-eval") {
		logf("go classifier benchmark (testing.B)")
		var err error
		res.goEval, res.goCmds["go-eval"], err = goBench(ctx, o.goCmd, root, "-bench", "^BenchmarkEval$", "-benchmem", "-count", "5", "./internal/policy")
		if err != nil {
			res.notef("The Go classifier benchmark failed: %v", err)
		}
	}
	if o.only.MatchString("bpf-bench") {
		logf("bpf classifier benchmark (testing.B, prog.Run)")
		var err error
		res.bpfB, res.goCmds["bpf-bench"], err = goBench(ctx, o.goCmd, root, "-bench", "^BenchmarkBPFClassify$", "-count", "3", "./internal/loader")
		if err != nil {
			res.notef("BenchmarkBPFClassify (internal/loader) failed: %v", err)
		}
	}

	logf("setting up users, sockets and binaries")
	f, err := setup(ctx, o.goCmd, root, dockerPath, busyboxPath, o.history)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer f.close()

	if o.only.MatchString("classify-bpf") {
		res.samples = map[string][]float64{}
	}
	states := []string{"off", "group", "setgid"}
	for round := range o.rounds {
		for i := range states {
			state := states[(i+round)%len(states)]
			if err := ctx.Err(); err != nil {
				return err
			}
			logf("round %d/%d: %s", round+1, o.rounds, state)
			if err := runState(ctx, o, f, res, state); err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, state, err)
			}
		}
		if res.samples != nil {
			s, err := progRunSamples(f.configs["group"], res.cases, 2000)
			if err != nil {
				return fmt.Errorf("prog.Run classification: %w", err)
			}
			for k, v := range s {
				res.samples[k] = append(res.samples[k], v...)
			}
		}
	}
	res.elapsed = time.Since(res.started)
	res.machine.loadAfter = loadavg()

	report := render(res)
	if o.out == "-" {
		_, err = io.WriteString(stdout, report)
		return err
	}
	if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
		return err
	}
	logf("wrote %s in %s", o.out, res.elapsed.Round(time.Second))
	return nil
}

// Workload sizes: each takes about a second here.
const (
	execN     = 1000
	connectN  = 20000
	getppidN  = 3000000
	dockerN   = 10
	hookN     = 200
	stormSecs = 3
	idleSecs  = 2
)

func runState(ctx context.Context, o options, f *fixture, res *results, state string) (err error) {
	var d *daemon
	sup := f.supervised(state)
	// Exec events of the storm are counted once the daemon has stopped and printed them all.
	stormEvents := int64(-1)
	if state != "off" {
		if d, err = startDaemon(o.dockwatch, f.configs[state], f.dir); err != nil {
			return err
		}
		defer func() {
			err = errors.Join(err, d.stop())
			if stormEvents >= 0 {
				res.add("storm-received", state, float64(d.execEvents(sup.uid)-stormEvents))
			}
			if dropped, ringDrops, ok := d.stopCounts(); ok {
				res.add("daemon-reader-drops", state, float64(dropped))
				res.add("daemon-ring-drops", state, float64(ringDrops))
			}
		}()
		res.add("daemon-start", state, d.StartedIn.Seconds()*1e3)
		if n := foreignProgs(d.Pid()); n > 0 {
			res.add("foreign-progs", state, float64(n))
		}
	} else if n := foreignProgs(0); n > 0 {
		res.add("foreign-progs", state, float64(n))
	}
	want := func(id string) bool { return o.only.MatchString(id) }
	load := func(id string, w workload, perOp float64) error {
		if !want(id) {
			return nil
		}
		r, err := f.run(ctx, w)
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		res.add(id, state, r.nsPerOp()/perOp)
		res.add(id+"-cpu", state, r.cpuNsPerOp()/perOp)
		return nil
	}

	if d != nil && want("daemon-idle") {
		pid := d.Pid()
		a, err := readUsage(pid)
		if err != nil {
			return err
		}
		time.Sleep(idleSecs * time.Second)
		b, err := readUsage(pid)
		if err != nil {
			return err
		}
		res.add("daemon-idle-rss", state, float64(b.rssKB)*1024/1e6)
		res.add("daemon-idle-cpu", state, cpuPercent(a, b))
	}
	n := func(k int) string { return "BENCH_N=" + strconv.Itoa(k) }
	steps := []struct {
		id    string
		w     workload
		perOp float64 // ns per unit
	}{
		{"exec-true-unsup", workload{as: f.free, path: f.benchload, env: append(execEnv("/bin/true", nil), n(execN))}, 1e3},
		{"exec-true-sup", workload{as: sup, path: f.benchload, env: append(execEnv("/bin/true", nil), n(execN))}, 1e3},
		{"connect-plain", workload{as: f.free, path: f.benchload, env: []string{"BENCH_MODE=connect", "BENCH_SOCK=" + f.plainSock, n(connectN)}}, 1e3},
		// The setgid copy run as `docker version`: an allowed trusted client.
		{"connect-protected", workload{as: sup, path: f.client, argv: []string{"docker", "version"},
			env: []string{"BENCH_MODE=connect", "BENCH_SOCK=" + f.protSock, n(connectN)}}, 1e3},
		{"getppid", workload{as: f.free, path: f.benchload, env: []string{"BENCH_MODE=getppid", n(getppidN)}}, 1},
		{"docker-version", workload{as: sup, path: f.benchload, env: append(execEnv(f.docker, []string{"docker", "version", "--format", "x"}), n(dockerN)),
			extra: []string{"DOCKER_HOST=unix://" + f.fakeSock}}, 1e6},
		{"wrapper-version", workload{as: sup, path: f.benchload, env: append(execEnv("/bin/bash", []string{"bash", f.wrapper, "version", "--format", "x"}), n(dockerN)),
			extra: []string{"DOCKER_HOST=unix://" + f.fakeSock}}, 1e6},
	}
	for _, s := range steps {
		if err := load(s.id, s.w, s.perOp); err != nil {
			return err
		}
	}

	if d != nil && want("classify-hook") {
		if err := hookCost(ctx, f, res, d, state, sup); err != nil {
			return err
		}
	}
	if want("storm") {
		if d != nil {
			stormEvents = d.execEvents(sup.uid)
		}
		if err := storm(ctx, f, res, d, state, sup); err != nil {
			return err
		}
	}
	return nil
}

// execEnv is the benchload setting that execs path with argv (nil: just the path).
func execEnv(path string, argv []string) []string {
	if argv == nil {
		argv = []string{path}
	}
	j, _ := json.Marshal(argv)
	return []string{"BENCH_MODE=exec", "BENCH_PATH=" + path, "BENCH_ARGV=" + string(j)}
}

// hookCost runs supervised execs of the trusted docker CLI with argv of each case (made to end
// in a block, so the process dies in the hook) and reads the exec hook's bpf_stats.
func hookCost(ctx context.Context, f *fixture, res *results, d *daemon, state string, sup account) error {
	restore, err := bpfStats()
	if err != nil {
		return err
	}
	defer restore()
	measure := func(name string, w workload, killed bool) error {
		before, err := progOf("dw_exec", d.Pid())
		if err != nil {
			return err
		}
		r, err := f.run(ctx, w)
		if err != nil {
			return fmt.Errorf("classify-hook %s: %w", name, err)
		}
		after, err := progOf("dw_exec", d.Pid())
		if err != nil {
			return err
		}
		if killed && r.Killed != r.Ops {
			res.notef("classify-hook %s (%s): %d of %d execs were not killed in the hook (%d failed)", name, state, r.Ops-r.Killed, r.Ops, r.Failed)
		}
		runs := after.RunCnt - before.RunCnt
		if runs == 0 {
			return fmt.Errorf("classify-hook %s: dw_exec did not run (bpf_stats off?)", name)
		}
		res.add("classify-hook-"+name, state, float64(after.RunTimeNs-before.RunTimeNs)/float64(runs))
		// Other processes' execs run the hook too (cheaply, unsupervised) and dilute the mean.
		res.add("classify-hook-runs-"+name, state, float64(runs)/float64(r.Ops))
		return nil
	}
	// The hook's other paths: a supervised exec that is not a client, and an allowed client
	// that runs on (no kill).
	if err := measure("not-client", workload{as: sup, path: f.benchload,
		env: append(execEnv("/bin/true", nil), "BENCH_N="+strconv.Itoa(hookN))}, false); err != nil {
		return err
	}
	if err := measure("allowed", workload{as: sup, path: f.benchload,
		env:   append(execEnv(f.docker, []string{"docker", "version", "--format", "x"}), "BENCH_N="+strconv.Itoa(dockerN)),
		extra: []string{"DOCKER_HOST=unix://" + f.fakeSock}}, false); err != nil {
		return err
	}
	for _, c := range res.cases {
		env := append(execEnv(f.docker, c.blocking()), "BENCH_N="+strconv.Itoa(hookN))
		if err := measure(c.name, workload{as: sup, path: f.benchload, env: env}, true); err != nil {
			return err
		}
	}
	return nil
}

// storm runs a supervised exec storm of a trusted client (busybox as `docker ps`: allowed, one
// exec event each) and compares events produced and received.
func storm(ctx context.Context, f *fixture, res *results, d *daemon, state string, sup account) error {
	env := []string{"BENCH_MODE=storm", "BENCH_PATH=" + f.busybox, `BENCH_ARGV=["docker","ps"]`,
		"BENCH_SECONDS=" + strconv.Itoa(stormSecs)}
	var before procUsage
	if d != nil {
		var err error
		if before, err = readUsage(d.Pid()); err != nil {
			return err
		}
	}
	r, err := f.run(ctx, workload{as: sup, path: f.benchload, env: env})
	if err != nil && r.Ops == 0 {
		return fmt.Errorf("storm: %w", err)
	}
	rate := float64(r.Ops) / (float64(r.Ns) / 1e9)
	res.add("storm-rate", state, rate)
	res.add("storm-produced", state, float64(r.Ops))
	if d == nil {
		return nil
	}
	after, err := readUsage(d.Pid())
	if err != nil {
		return err
	}
	res.add("daemon-storm-cpu", state, cpuPercent(before, after))
	// Let the daemon catch up before its memory is read.
	time.Sleep(time.Second)
	final, err := readUsage(d.Pid())
	if err != nil {
		return err
	}
	// VmHWM is only brought up to date now and then, so the last VmRSS counts too.
	res.add("daemon-storm-rss", state, float64(max(final.hwmKB, final.rssKB, after.rssKB))*1024/1e6)
	return nil
}

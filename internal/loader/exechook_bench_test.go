package loader

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/bench/argvshape"
	"github.com/dockwatch/dockwatch/internal/policy"
)

// execHookEnv is the set-up of BenchmarkExecHook: the dockwatch programs loaded with the default
// tables, a trusted client (a copy of /bin/true), an untrusted copy, a protected socket, and the
// ring buffer drained in the background so that every exec takes the same path.
type execHookEnv struct {
	dir     string
	client  string
	other   string
	enf     *Enforcer
	prog    *ebpf.Program
	events  chan int // exec events read, sent when the reader stops
	stopped chan struct{}
}

func newExecHookEnv(b *testing.B) *execHookEnv {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skipf("needs root to load BPF (euid %d)", os.Geteuid())
	}
	f := ProbeFeatures()
	if _, err := MakePlan(f, "group"); err != nil {
		b.Skipf("kernel cannot run the fallback programs: %v (%s)", err, strings.Join(f.Notes, "; "))
	}
	// Not b.TempDir: its parent is 0700, and the supervised uid must reach the client.
	dir, err := os.MkdirTemp("", "dwb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	env := &execHookEnv{dir: dir, client: filepath.Join(dir, "docker"), other: filepath.Join(dir, "true")}
	for _, p := range []string{env.client, env.other} {
		data, err := os.ReadFile("/bin/true")
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "d.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	tables, err := policy.Compile(policy.DefaultPolicy())
	if err != nil {
		b.Fatal(err)
	}
	env.enf, err = Load(Options{
		UIDs:           []uint32{testUID},
		FollowChildren: true,
		Access:         "group",
		Clients:        []string{env.client},
		Plugins:        []string{"compose", "buildx"},
		Sockets:        []string{sock},
		Tables:         tables,
	})
	if err != nil {
		b.Fatalf("Load: %v", err)
	}
	b.Cleanup(func() { env.enf.Close() })
	env.prog = env.enf.coll.Programs["dw_exec"]
	if env.prog == nil {
		b.Fatal("no dw_exec program in the collection")
	}
	rd, err := env.enf.NewEventReader()
	if err != nil {
		b.Fatal(err)
	}
	env.events = make(chan int, 1)
	go func() {
		n := 0
		for {
			if _, err := rd.Read(); err != nil {
				env.events <- n
				return
			}
			n++
		}
	}()
	b.Cleanup(func() {
		rd.Close()
		<-env.events
	})
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Skipf("kernel.bpf_stats_enabled cannot be switched on: %v", err)
	}
	b.Cleanup(func() { stats.Close() })
	return env
}

// execAs fork+execs path with argv and env (exactly as given: os/exec would drop duplicate
// names) as the supervised uid and waits for it.
func execAs(b testing.TB, path string, argv, envv []string) syscall.WaitStatus {
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env: envv,
		Sys: &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testUID, Gid: testUID}},
	})
	if err != nil {
		b.Fatalf("exec %v: %v", argv, err)
	}
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		b.Fatalf("wait %v: %v", argv, err)
	}
	return ws
}

// envOf is an environment of about size bytes (as laid out at mm->env_start), none of it a
// loader variable.
func envOf(size int) []string {
	envv := []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "LANG=C.UTF-8"}
	used := 0
	for _, e := range envv {
		used += len(e) + 1
	}
	for i := 0; used < size; i++ {
		e := fmt.Sprintf("BENCH_VAR_%d=%s", i, strings.Repeat("x", 60))
		envv = append(envv, e)
		used += len(e) + 1
	}
	return envv
}

// BenchmarkExecHook measures the real exec hook (dw_exec, tp_btf/sched_process_exec) with
// kernel.bpf_stats_enabled: its run time per run (hook-ns/run) over supervised execs of a
// trusted client, for argv and environments of several sizes, and for a supervised exec that
// is not a client. Every other exec on the machine in the same window runs the hook too (an
// unsupervised exec returns after a map lookup or two), so runs/exec says how diluted the mean
// is. Run it as root:
//
//	go test -run '^$' -bench '^BenchmarkExecHook$' -benchtime 2000x ./internal/loader
func BenchmarkExecHook(b *testing.B) {
	env := newExecHookEnv(b)
	small := envOf(0)
	blocked := func(argv []string) []string { return append(argv[:len(argv)-1:len(argv)-1], "--privileged", "busybox") }
	for _, bc := range []struct {
		name   string
		path   string
		argv   []string
		envv   []string
		killed bool
	}{
		{"not-client", env.other, []string{"true"}, small, false},
		{"50B", env.client, benchArgv(50, 30), small, false},
		{"50B-block", env.client, blocked(benchArgv(50, 30)), small, true},
		{"50B-env4KiB", env.client, benchArgv(50, 30), envOf(4096), false},
		{"50B-env32KiB", env.client, benchArgv(50, 30), envOf(32768), false},
		{"1KiB", env.client, benchArgv(1024, 30), small, false},
		{"4KiB", env.client, benchArgv(4096, 30), small, false},
		{"4KiB-block", env.client, blocked(benchArgv(4096, 30)), small, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Once outside the timing: the verdict must be what the case says.
			ws := execAs(b, bc.path, bc.argv, bc.envv)
			if killed := ws.Signaled() && ws.Signal() == syscall.SIGKILL; killed != bc.killed {
				b.Fatalf("%v: wait status %#x, want killed=%v", bc.argv, ws, bc.killed)
			}
			before, err := env.prog.Stats()
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				execAs(b, bc.path, bc.argv, bc.envv)
			}
			b.StopTimer()
			after, err := env.prog.Stats()
			if err != nil {
				b.Fatal(err)
			}
			runs := after.RunCount - before.RunCount
			ns := float64(after.Runtime - before.Runtime)
			if runs == 0 {
				b.Fatal("dw_exec did not run (bpf_stats off?)")
			}
			b.ReportMetric(ns/float64(runs), "hook-ns/run")
			b.ReportMetric(float64(runs)/float64(b.N), "runs/exec")
			b.ReportMetric(float64(len(JoinArgv(bc.argv))), "argv-bytes")
		})
	}
}

// TestExecHookVerifierCost loads the exec hook with verifier statistics and checks the
// verifier's work against verifierBudget: dw_exec (argv reader, environment scan,
// classifier and event in one program) must stay well below the kernel's 1M instruction
// limit so that older verifiers (kernel 6.1) load it too.
func TestExecHookVerifierCost(t *testing.T) {
	requireEnforcement(t)
	spec, err := loadDockwatch()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables["dw_cfg"].Set(dockwatchDwConfig{FollowChildren: 1}); err != nil {
		t.Fatal(err)
	}
	for name := range spec.Programs {
		if name != "dw_exec" {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer coll.Close()
	prog := coll.Programs["dw_exec"]
	m := processedRe.FindStringSubmatch(prog.VerifierLog)
	if m == nil {
		t.Fatalf("no instruction count in the verifier log:\n%s", prog.VerifierLog)
	}
	var processed int
	fmt.Sscan(m[1], &processed)
	t.Logf("dw_exec verifier: %s", strings.TrimSpace(m[0]))
	if processed > verifierBudget {
		t.Errorf("verifier processed %d instructions on dw_exec, budget %d", processed, verifierBudget)
	}
}

// BenchmarkBPFClassifyLimits runs the classifier (prog.Run on the SEC("syscall") wrapper) on
// the worst-case argv shapes of bench/argvshape: MaxTokens elements of one kind of option.
func BenchmarkBPFClassifyLimits(b *testing.B) {
	c := loadTestClassifier(b)
	tab := compile(b, policy.DefaultPolicy())
	loadTables(b, c, tab)
	for _, shape := range argvshape.LimitShapes {
		argv := shape.AtLimit()
		raw := JoinArgv(argv)
		b.Run(shape.Name, func(b *testing.B) {
			want := tab.Eval(policy.BinDocker, argv)
			var kernel time.Duration
			const chunk = 1000
			for done := 0; done < b.N; {
				n := min(b.N-done, chunk)
				got, err := c.Run(policy.BinDocker, raw, uint32(n))
				if err != nil {
					b.Fatal(err)
				}
				if got.Result != want {
					b.Fatalf("bpf %+v, go %+v", got.Result, want)
				}
				kernel += got.Elapsed
				done += n
			}
			b.ReportMetric(float64(kernel.Nanoseconds())/float64(b.N), "bpf-ns/op")
			b.ReportMetric(float64(len(raw)), "argv-bytes")
			b.ReportMetric(float64(len(argv)), "tokens")
		})
	}
}

// envTampers is the Go reference of env_tampered for an environment below ENV_MAX_BYTES: a
// string that sets LD_PRELOAD, LD_AUDIT or LD_LIBRARY_PATH to something.
func envTampers(envv []string) bool {
	for _, e := range envv {
		for _, name := range []string{"LD_PRELOAD=", "LD_AUDIT=", "LD_LIBRARY_PATH="} {
			if strings.HasPrefix(e, name) && len(e) > len(name) {
				return true
			}
		}
	}
	return false
}

// randomEnv is an environment of look-alikes of the loader variables ("LD", "LD_PRELOA",
// "XLD_AUDIT=x", empty values ...) and padding that puts them at and around the 8 KiB chunk
// boundaries of the scan, sometimes with one real loader variable in it.
func randomEnv(r *rand.Rand) []string {
	pieces := []string{"LD", "L", "LD_", "LD_PRELOAD", "LD_PRELOAD=", "LD_PRELOA", "LD_AUDIT",
		"LD_AUDIT=", "LD_AUDITX=1", "LD_LIBRARY_PATH=", "LD_LIBRARY_PATHS=1", "XLD_PRELOAD=x",
		"A=LD_PRELOAD=x", "LDX=1", "LANG=C", "LC_ALL=C", "", "=", "L=D", "LD=LD_AUDIT=x"}
	real := []string{"LD_PRELOAD=x", "LD_AUDIT=/a.so", "LD_LIBRARY_PATH=/l"}
	var envv []string
	size := 0
	n := 1 + r.IntN(40)
	for range n {
		var e string
		switch k := r.IntN(10); {
		case k < 6:
			e = pieces[r.IntN(len(pieces))]
		case k < 9:
			// padding that ends right around a chunk boundary (8192 * m, minus the NUL)
			target := 8192*(1+r.IntN(3)) - 20 + r.IntN(40)
			if target <= size+2 {
				continue
			}
			e = "P=" + strings.Repeat("x", min(target-size-3, 30000))
		default:
			if r.IntN(3) == 0 {
				e = real[r.IntN(len(real))]
			} else {
				e = pieces[r.IntN(len(pieces))]
			}
		}
		if size+len(e)+1 > 60000 {
			break
		}
		envv = append(envv, e)
		size += len(e) + 1
	}
	return envv
}

// envLayout describes an environment by the offset and contents of each string, padding
// abbreviated.
func envLayout(envv []string) string {
	var b strings.Builder
	off := 0
	for _, e := range envv {
		if len(e) > 40 {
			fmt.Fprintf(&b, "  %6d: %q... (%d bytes)\n", off, e[:12], len(e))
		} else {
			fmt.Fprintf(&b, "  %6d: %q\n", off, e)
		}
		off += len(e) + 1
	}
	return b.String()
}

// TestEnvScanRandom checks the exec hook's environment scan (env_tampered in bpf/lsm.h)
// against envTampers on random environments of look-alikes placed around its chunk
// boundaries: a trusted client is killed exactly when its environment sets a loader variable.
func TestEnvScanRandom(t *testing.T) {
	requireEnforcement(t)
	env := newTestEnv(t)
	tables, err := policy.Compile(policy.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	opts := env.options()
	opts.Tables = tables
	loadOrFail(t, opts)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DOCKWATCH_ENV_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (rerun with DOCKWATCH_ENV_SEED=%d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0))
	tampered := 0
	const n = 1000
	for i := range n {
		envv := randomEnv(r)
		want := envTampers(envv)
		if want {
			tampered++
		}
		ws := execAs(t, env.client, []string{"docker", "ps"}, envv)
		if got := ws.Signaled() && ws.Signal() == syscall.SIGKILL; got != want {
			t.Fatalf("environment %d (%d strings, %d bytes): killed %v, want %v\n%s", i, len(envv),
				len(strings.Join(envv, "\x00"))+1, got, want, envLayout(envv))
		}
	}
	t.Logf("%d environments, %d setting a loader variable", n, tampered)
	if tampered == 0 || tampered == n {
		t.Errorf("%d of %d environments set a loader variable: the generator tests one side only", tampered, n)
	}
}

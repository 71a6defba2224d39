package loader

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dockwatch/dockwatch/internal/policy"
)

func TestModePlans(t *testing.T) {
	full := Features{BTF: true, RingBuf: true, TaskStorage: true, TpBTF: true, ConnectUnix: true, SyscallTracepoints: true}
	withLSM := full
	withLSM.LSMActive, withLSM.LSM = true, true
	refused := full // lockdown: the LSM is active, its programs do not load
	refused.LSMActive = true
	lsmOnly := withLSM // an LSM kernel without any fallback gate
	lsmOnly.ConnectUnix, lsmOnly.SyscallTracepoints = false, false
	bare := full
	bare.ConnectUnix, bare.SyscallTracepoints = false, false
	lsmProgs := []string{"dw_fork", "dw_exec", "dw_lsm_connect", "dw_lsm_ptrace"}
	noStorage := full // Debian's 6.12: connect_unix exists, its programs may not use task storage
	noStorage.ConnectUnix = false
	noStorage.ConnectUnixRefused = "load program: invalid argument: program of this type cannot use helper bpf_task_storage_get#156"

	cases := []struct {
		name   string
		f      Features
		access string
		mode   string
		modes  []string // plan modes, in order
		reason string   // in the first plan's reason
		err    string
	}{
		{"auto with the LSM tries lsm first", withLSM, "group", "", []string{ModeLSM, ModeTracepoint}, "BPF LSM is active", ""},
		{"auto without the LSM", full, "group", "auto", []string{ModeTracepoint}, "not active", ""},
		{"auto, LSM only", lsmOnly, "setgid", "auto", []string{ModeLSM}, "fallback would not work", ""},
		{"forced lsm", withLSM, "setgid", "lsm", []string{ModeLSM}, `mode = "lsm"`, ""},
		{"forced tracepoint", withLSM, "group", "tracepoint", []string{ModeTracepoint}, `mode = "tracepoint"`, ""},
		{"forced lsm without the LSM", full, "group", "lsm", nil, "", "add bpf to lsm="},
		{"auto, LSM programs refused", refused, "group", "auto", []string{ModeTracepoint}, "refuses LSM programs", ""},
		{"forced lsm, programs refused", refused, "group", "lsm", nil, "", "do not load"},
		{"6.12 without the LSM: enter gate", noStorage, "group", "auto", []string{ModeTracepoint}, "may not use task storage (load program", ""},
		{"6.12 with the LSM: the fallback says why", func() Features { f := noStorage; f.LSMActive, f.LSM = true, true; return f }(),
			"setgid", "auto", []string{ModeLSM, ModeTracepoint}, "BPF LSM is active", ""},
		{"nothing can enforce", bare, "group", "auto", nil, "", "BPF LSM not active"},
		{"bad mode", withLSM, "group", "kprobe", nil, "", `mode "kprobe"`},
		{"bad access", withLSM, "other", "lsm", nil, "", `access "other"`},
	}
	for _, c := range cases {
		plans, err := ModePlans(c.f, c.access, c.mode)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one containing %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var modes []string
		for _, p := range plans {
			modes = append(modes, p.Mode)
			if p.Mode == ModeLSM && (!slices.Equal(p.Programs, lsmProgs) || p.Gate != GateLSM || p.PostCheck) {
				t.Errorf("%s: lsm plan %+v", c.name, p)
			}
			if p.ModeReason == "" {
				t.Errorf("%s: plan %s has no reason", c.name, p.Mode)
			}
		}
		if !slices.Equal(modes, c.modes) {
			t.Errorf("%s: modes %v, want %v", c.name, modes, c.modes)
		}
		if !strings.Contains(plans[0].ModeReason, c.reason) {
			t.Errorf("%s: reason %q, want it to contain %q", c.name, plans[0].ModeReason, c.reason)
		}
	}
	if plans, err := ModePlans(noStorage, "setgid", "tracepoint"); err != nil || plans[0].Gate != GateEnterConnect ||
		!strings.Contains(plans[0].ModeReason, "bpf_task_storage_get") {
		t.Errorf("6.12 forced tracepoint: %+v, %v; want the sys_enter_connect gate and the reason", plans, err)
	}
	if plans, _ := ModePlans(full, "group", "auto"); strings.Contains(plans[0].ModeReason, "task storage") {
		t.Errorf("6.7+ with task storage: reason %q talks about task storage", plans[0].ModeReason)
	}
	if _, err := ModePlans(full, "group", "lsm"); !errors.Is(err, ErrNoBPFLSM) || !errors.Is(err, ErrNotSupported) {
		t.Errorf("forced lsm without the LSM: %v, want ErrNoBPFLSM and ErrNotSupported", err)
	}
	if GateLSM.String() != "lsm/unix_stream_connect" {
		t.Errorf("GateLSM = %q", GateLSM)
	}
}

// TestLoadMode: the mode Load picks agrees with the probe, and a forced mode the kernel cannot
// run fails naming the fix.
func TestLoadMode(t *testing.T) {
	f := requireEnforcement(t)
	env := newTestEnv(t)
	e := loadOrFail(t, env.options())
	want := ModeTracepoint
	if f.LSM {
		want = ModeLSM
	}
	// Auto may fall back when the LSM programs do not load; the reason must then say so.
	if e.Plan.Mode != want && !strings.Contains(e.Plan.ModeReason, "lsm mode failed") {
		t.Errorf("mode %s (%s), want %s", e.Plan.Mode, e.Plan.ModeReason, want)
	}
	t.Logf("mode %s: %s; attached %v", e.Plan.Mode, e.Plan.ModeReason, e.Attached())
	e.Close()
	if want != ModeLSM {
		opts := env.options()
		opts.Mode = ModeLSM
		_, err := Load(opts)
		if !errors.Is(err, ErrNoBPFLSM) && !errors.Is(err, ErrLSMRefused) {
			t.Errorf("forced lsm mode on a kernel without usable BPF LSM: %v, want ErrNoBPFLSM or ErrLSMRefused", err)
		}
		t.Logf("forced lsm mode: %v", err)
	}
}

// TestTamperedEnv: LD_PRELOAD, LD_AUDIT or LD_LIBRARY_PATH in a trusted client's environment
// makes its exec BLOCK in every mode, wherever in the environment it is.
func TestTamperedEnv(t *testing.T) {
	requireEnforcement(t)
	env := newTestEnv(t)
	tables, err := policy.Compile(policy.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	opts := env.options()
	opts.Tables = tables
	client := env.helperCopy(t, "docker-helper")
	opts.Clients = append(opts.Clients, client)
	e := loadOrFail(t, opts)
	events := collectEvents(t, e)

	pad := func(n int) string { return "PAD=" + strings.Repeat("x", n) }
	first := "DW_HELPER=connect:" + env.sock
	// padTo is a variable that makes the next one start at byte off of the environment.
	padTo := func(off int) string { return pad(off - (len(first) + 1) - len("PAD=") - 1) }
	cases := []struct {
		name   string
		env    []string
		tamper bool
	}{
		{"clean", []string{"HOME=/", "PATH=/bin"}, false},
		{"LD_PRELOAD", []string{"HOME=/", "LD_PRELOAD=/tmp/evil.so"}, true},
		{"LD_PRELOAD first", []string{"LD_PRELOAD=/tmp/evil.so", "HOME=/"}, true},
		{"LD_AUDIT", []string{"LD_AUDIT=x.so"}, true},
		{"LD_LIBRARY_PATH", []string{"A=1", "LD_LIBRARY_PATH=/tmp"}, true},
		{"empty values load nothing", []string{"LD_PRELOAD=", "LD_AUDIT=", "LD_LIBRARY_PATH="}, false},
		{"look-alikes", []string{"XLD_PRELOAD=x", "LD_PRELOADX=1", "LD_AUDITX=1", "LD_LIBRARY_PATHS=1", "MY=LD_PRELOAD=x"}, false},
		{"after the first chunk", []string{pad(9000), "LD_LIBRARY_PATH=/tmp"}, true},
		{"across a chunk boundary", []string{padTo(8192 - 5), "LD_PRELOAD=/x"}, true},
		{"right at a chunk boundary", []string{padTo(8192), "LD_PRELOAD=/x"}, true},
		{"right after a chunk boundary", []string{padTo(8193), "LD_PRELOAD=/x"}, true},
		{"value across a chunk boundary", []string{padTo(8192 - 16), "LD_LIBRARY_PATH=/x"}, true},
		{"empty value at a chunk boundary", []string{padTo(8192 - 16), "LD_LIBRARY_PATH=", "C=3"}, false},
		{"long but clean", []string{pad(40000), "B=2"}, false},
		{"too long to check", []string{pad(70000)}, true},
		{"deep in a long environment", []string{pad(50000), "LD_AUDIT=/x"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			envv := append([]string{first}, c.env...)
			r := runEnv(t, testUID, client, []string{"docker", "ps"}, envv)
			if c.tamper {
				if !r.killed() || r.out != "" {
					t.Fatalf("docker ps with %.60q: %v, want SIGKILL before it ran", c.env, r)
				}
			} else if strings.TrimSpace(r.out) != "ok" {
				t.Fatalf("docker ps with %.60q: %v, want it to run and connect", c.env, r)
			}
			ev := events.wait(t, "exec event", func(ev *dockwatchEvent) bool {
				return ev.Kind == 1 && ev.Uid == testUID && ev.Bin == uint8(policy.BinDocker)
			})
			tampered := ev.Flags&64 != 0
			if tampered != c.tamper {
				t.Errorf("event flags %#x, want tampered-env %v", ev.Flags, c.tamper)
			}
			if c.tamper && (ev.Verdict != uint8(policy.VerdictBlock) || ev.Action != 1) {
				t.Errorf("event verdict %d action %d, want BLOCK, killed", ev.Verdict, ev.Action)
			}
			// The classifier's own result stays in the record: Go's second opinion agrees.
			if ev.Res.Verdict != uint8(policy.VerdictAllow) {
				t.Errorf("classifier result %+v, want ALLOW for docker ps", ev.Res)
			}
		})
	}
}

package loader

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMakePlan(t *testing.T) {
	full := Features{BTF: true, RingBuf: true, TaskStorage: true, TpBTF: true, ConnectUnix: true, SyscallTracepoints: true}
	old := full
	old.ConnectUnix = false // kernel 6.1 .. 6.6
	bare := full
	bare.ConnectUnix, bare.SyscallTracepoints = false, false
	noTp := full
	noTp.SyscallTracepoints = false
	noBTF := full
	noBTF.BTF, noBTF.TpBTF = false, false

	cases := []struct {
		name     string
		f        Features
		access   string
		gate     Gate
		post     bool
		programs []string
		err      string
	}{
		{"6.7+ group", full, "group", GateConnectUnix, true,
			[]string{"dw_fork", "dw_exec", "dw_connect_unix", "dw_enter_connect", "dw_exit_connect"}, ""},
		{"6.7+ setgid: no syscall tracepoint", full, "setgid", GateConnectUnix, false,
			[]string{"dw_fork", "dw_exec", "dw_connect_unix"}, ""},
		{"old kernel group", old, "group", GateEnterConnect, true,
			[]string{"dw_fork", "dw_exec", "dw_enter_connect", "dw_exit_connect"}, ""},
		{"old kernel setgid: path check only", old, "setgid", GateEnterConnect, false,
			[]string{"dw_fork", "dw_exec", "dw_enter_connect"}, ""},
		{"no gate at all", bare, "setgid", 0, false, nil, "no connect gate"},
		{"group without tracepoints", noTp, "group", 0, false, nil, "post-connect check"},
		{"setgid without tracepoints", noTp, "setgid", GateConnectUnix, false,
			[]string{"dw_fork", "dw_exec", "dw_connect_unix"}, ""},
		{"no BTF", noBTF, "group", 0, false, nil, "kernel BTF, tp_btf programs"},
		{"bad access", full, "other", 0, false, nil, `access "other"`},
	}
	for _, c := range cases {
		p, err := MakePlan(c.f, c.access)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one containing %q", c.name, err, c.err)
			}
			if c.access != "other" && !errors.Is(err, ErrNotSupported) {
				t.Errorf("%s: err %v is not ErrNotSupported", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if p.Gate != c.gate || p.PostCheck != c.post || !slices.Equal(p.Programs, c.programs) {
			t.Errorf("%s: plan %+v, want gate %v post %v programs %v", c.name, p, c.gate, c.post, c.programs)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	const info = `22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw
40 30 0:28 /sub /mnt/cg\040space rw master:1 - cgroup2 cgroup2 rw
41 22 0:12 / /sys/kernel/tracing rw - tracefs tracefs rw
`
	entries, err := parseMountinfo(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := findMount(entries, "cgroup2"); !ok || p != "/sys/fs/cgroup/unified" {
		t.Errorf("cgroup2 root = %q, %v", p, ok)
	}
	if p, ok := findMount(entries, "tracefs"); !ok || p != "/sys/kernel/tracing" {
		t.Errorf("tracefs = %q, %v", p, ok)
	}
	if entries[3].Point != "/mnt/cg space" || entries[3].Root != "/sub" {
		t.Errorf("escaped entry %+v", entries[3])
	}
	if _, ok := findMount(entries, "bpf"); ok {
		t.Error("found a bpf mount that is not there")
	}
	if _, err := parseMountinfo(strings.NewReader("garbage line\n")); err == nil {
		t.Error("malformed mountinfo accepted")
	}
}

func TestKernelDev(t *testing.T) {
	// st_dev 0x10302 is major 259 (0x103), minor 2 in the userspace encoding.
	if got := KernelDev(0x10302); got != 259<<20|2 {
		t.Errorf("KernelDev = %#x", got)
	}
	// Large minors live in the high bits of st_dev.
	if got := KernelDev(unix.Mkdev(8, 300000)); got != 8<<20|300000 {
		t.Errorf("KernelDev large minor = %#x", got)
	}
}

// TestConnectUnixGateProbe: where cgroup/connect_unix programs load, the probe of the real gate
// program either passes (and the plan uses it) or names the helper the kernel refuses; no
// other load failure may quietly move the gate to the syscall tracepoint.
func TestConnectUnixGateProbe(t *testing.T) {
	f := requireEnforcement(t)
	if !f.ConnectUnix && f.ConnectUnixRefused == "" {
		t.Skipf("no cgroup/connect_unix on this kernel (before 6.7): %s", strings.Join(f.Notes, "; "))
	}
	err := probeConnectUnixGate()
	switch {
	case f.ConnectUnix && err != nil:
		t.Fatalf("features say the gate loads, the probe now fails: %v", err)
	case f.ConnectUnix:
		p, err := MakePlan(f, "setgid")
		if err != nil || p.Gate != GateConnectUnix {
			t.Errorf("plan %+v, %v; want the cgroup/connect_unix gate", p, err)
		}
	case !strings.Contains(f.ConnectUnixRefused, "cannot use helper"):
		t.Errorf("connect_unix gate refused for another reason than a helper: %s", f.ConnectUnixRefused)
	default:
		t.Logf("this kernel refuses the gate program: %s", f.ConnectUnixRefused)
	}
}

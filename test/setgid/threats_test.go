package setgid

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Outcomes a README cell can state; the cell text starts with one of them.
const (
	refused = "refused" // nothing forbidden reaches dockerd, in every attempt
	race    = "race"    // a residual race: some attempts may get through
	through = "through" // gets through
	untest  = "untested"
)

// threat is one row of the README's threat-model table. The cells are the README text; the
// test runs every attack in both fallback-mode columns and fails when what it observes differs
// from the word a cell starts with.
type threat struct {
	id     string
	attack string
	// cells: group/fallback, setgid/fallback, group/lsm, setgid/lsm
	groupFallback, setgidFallback, groupLSM, setgidLSM string
}

// The lsm-mode cells. group / lsm comes from test/lsm in the VM configurations 6.12-lsm and
// 6.1-lsm (test/vm), which run it with access = "group" against the fake Engine API. The VMs
// have no useradd and no setgid set-up, so setgid / lsm is not run there; what refuses those
// attacks in setgid access (the kernel's permission check, non-dumpable setgid processes, the
// exec hook) does not depend on the mode, and setgid / fallback tests it.
func lsmProved(how, test string) string {
	return refused + ": " + how + " (test/lsm " + test + ", VM 6.12-lsm/6.1-lsm)"
}

const (
	lsmGate       = "lsm gate EPERM on the listening socket"
	setgidLSMPerm = untest + ": not run in the VMs; the kernel permission check is kernel-independent (see setgid / fallback)"
	setgidLSMExec = untest + ": not run in the VMs; the setgid exec check is the exec hook of every mode (see setgid / fallback)"
	setgidLSMDump = untest + ": not run in the VMs; a setgid process is non-dumpable on every kernel (see setgid / fallback)"
)

// threats is the table (README.md, between the threat-model markers).
var threats = []threat{
	{"curl", "curl on the socket path", refused + ": path gate (EPERM)", refused + ": path gate, and the kernel's permission check (EACCES)", lsmProved(lsmGate, "TestBypasses/raw connect"), setgidLSMPerm},
	{"python", "python on the socket path", refused + ": path gate (EPERM)", refused + ": path gate, and the kernel's permission check", lsmProved(lsmGate+"; the gate is the same for every untrusted binary, curl stands in", "TestBypasses/raw connect"), setgidLSMPerm},
	{"nc", "`nc -U` on the socket path", refused + ": path gate (EPERM)", refused + ": path gate, and the kernel's permission check", lsmProved(lsmGate+"; the gate is the same for every untrusted binary, curl stands in", "TestBypasses/raw connect"), setgidLSMPerm},
	{"symlink", "curl through a symlink to the socket", refused + ": post-connect check kills before connect() returns", refused + ": kernel permission check (EACCES)", lsmProved(lsmGate, "TestBypasses/symlink to the socket"), setgidLSMPerm},
	{"hardlink", "curl through a hard link to the socket (root made it; protected_hardlinks stops users)", refused + ": post-connect check", refused + ": kernel permission check", lsmProved(lsmGate, "TestBypasses/hard link"), setgidLSMPerm},
	{"proc-root", "curl through /proc/self/root/...", refused + ": post-connect check", refused + ": kernel permission check", lsmProved(lsmGate, "TestBypasses//proc/self/root path"), setgidLSMPerm},
	{"userns-bind", "user namespace bind mount of the socket (unshare -Urm, mount --bind)", refused + ": post-connect check (same inode)", refused + ": kernel permission check (the namespace maps no group of the socket)", lsmProved(lsmGate+" (same socket, any mount)", "TestBypasses/user namespace bind mount"), setgidLSMPerm},
	{"iouring", "io_uring connect to the socket path", refused + ": path gate (connect_unix runs inside the connect, io_uring too)", refused + ": path gate, and the kernel's permission check", lsmProved(lsmGate+" (the LSM hook runs for io_uring too)", "TestBypasses/io_uring connect"), setgidLSMPerm},
	{"iouring-symlink", "io_uring connect through a symlink", through + ": no syscall tracepoint fires, so the post-connect check never runs; use setgid access", refused + ": kernel permission check", lsmProved(lsmGate, "TestBypasses/io_uring connect through a symlink"), setgidLSMPerm},
	{"thread-race", "a thread writes a request while another connects through a symlink", race + ": the post-connect kill lands after connect() completed; the other thread may send first", refused + ": kernel permission check", lsmProved(lsmGate+", before the socket is connected", "TestBypasses/thread racing the connect (symlink)"), setgidLSMPerm},
	{"memfd-copy", "memfd copy of the CLI, run with execveat", refused + ": a new inode is not a trusted client; path gate", refused + ": no setgid bit on the copy; kernel permission check", lsmProved("a new inode is not a trusted client; "+lsmGate, "TestBypasses/memfd copy of the CLI"), setgidLSMPerm},
	{"plain-copy", "plain copy of the CLI", refused + ": not a trusted client; path gate", refused + ": no setgid bit on the copy; kernel permission check", lsmProved("not a trusted client; "+lsmGate, "TestBypasses/copied docker binary"), setgidLSMPerm},
	{"plugin-home", "plugin shadowing compose in ~/.docker/cli-plugins", refused + ": it runs, without a verdict; its connects are gated", refused + ": killed at exec (setgid-untrusted-exec)", lsmProved("it runs, without a verdict; "+lsmGate, "TestShadowingPlugin/DOCKER_CONFIG cli-plugins"), setgidLSMExec},
	{"plugin-config", "plugin shadowing compose via --config", refused + ": it runs, without a verdict; its connects are gated", refused + ": killed at exec (setgid-untrusted-exec)", lsmProved("it runs, without a verdict; "+lsmGate, "TestShadowingPlugin/--config cli-plugins"), setgidLSMExec},
	{"credhelper", "credsStore credential helper", refused + ": it runs, without a verdict; its connects are gated", refused + ": killed at exec (setgid-untrusted-exec)", untest + ": not run in the VMs; it is an untrusted binary the CLI runs, as the shadowing plugin (refused there)", setgidLSMExec},
	{"ssh", "`ssh` for DOCKER_HOST=ssh:// (a fake ssh earlier in PATH)", refused + ": it runs, without a verdict; its connects are gated", refused + ": killed at exec (setgid-untrusted-exec)", untest + ": not run in the VMs; it is an untrusted binary the CLI runs, as the shadowing plugin (refused there)", setgidLSMExec},
	{"ptrace", "ptrace of a running CLI", through + ": same uid and dumpable; `dockwatch sandbox` denies ptrace", refused + ": the setgid CLI is not dumpable (EPERM)", lsmProved("lsm/ptrace_access_check EPERM, tamper event", "TestTamper/ptrace"), setgidLSMDump},
	{"pidfd-getfd", "pidfd_getfd of a running CLI's socket", through + ": same uid and dumpable; `dockwatch sandbox` denies pidfd_getfd", refused + ": the setgid CLI is not dumpable (EPERM)", lsmProved("lsm/ptrace_access_check EPERM, tamper event", "TestTamper/getfd"), setgidLSMDump},
}

// expected is the outcome word a cell starts with.
func expected(cell string) string {
	word, _, _ := strings.Cut(cell, ":")
	return word
}

func (th threat) cell(access string) string {
	if access == "setgid" {
		return th.setgidFallback
	}
	return th.groupFallback
}

// Markers around the table in README.md.
const (
	tableBegin = "<!-- threat-model:begin (generated from test/setgid/threats_test.go) -->"
	tableEnd   = "<!-- threat-model:end -->"
)

// threatTable is the README table, markers included.
func threatTable() string {
	var b strings.Builder
	b.WriteString(tableBegin + "\n")
	b.WriteString("| attack | group / fallback | setgid / fallback | group / lsm | setgid / lsm |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, th := range threats {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", th.attack, th.groupFallback, th.setgidFallback, th.groupLSM, th.setgidLSM)
	}
	b.WriteString(tableEnd + "\n")
	return b.String()
}

// TestThreatTable checks the data itself and that README.md holds exactly this table.
// DW_WRITE_THREAT_TABLE=1 rewrites the README section.
func TestThreatTable(t *testing.T) {
	ids := map[string]bool{}
	for _, th := range threats {
		if ids[th.id] {
			t.Errorf("threat %s listed twice", th.id)
		}
		ids[th.id] = true
		for _, c := range []string{th.groupFallback, th.setgidFallback, th.groupLSM, th.setgidLSM} {
			switch expected(c) {
			case refused, race, through, untest:
			default:
				t.Errorf("threat %s: cell %q does not start with refused, race, through or untested", th.id, c)
			}
		}
		if expected(th.groupFallback) == untest || expected(th.setgidFallback) == untest {
			t.Errorf("threat %s: the fallback columns are tested here and must say what happens", th.id)
		}
	}
	readme := filepath.Join("..", "..", "README.md")
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i, j := strings.Index(text, tableBegin), strings.Index(text, tableEnd)
	want := strings.TrimSuffix(threatTable(), "\n")
	if os.Getenv("DW_WRITE_THREAT_TABLE") == "1" && i >= 0 && j > i {
		text = text[:i] + want + text[j+len(tableEnd):]
		if err := os.WriteFile(readme, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if i < 0 || j < i {
		t.Fatalf("README.md has no threat-model table between %q and %q; insert:\n%s", tableBegin, tableEnd, want)
	}
	if got := text[i : j+len(tableEnd)]; got != want {
		t.Errorf("README.md's threat-model table differs from test/setgid/threats_test.go (DW_WRITE_THREAT_TABLE=1 go test ./test/setgid -run TestThreatTable rewrites it):\n got:\n%s\nwant:\n%s", got, want)
	}
}

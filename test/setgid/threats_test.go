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

// lsmCell is the lsm-mode cell: this loader has no lsm mode yet, so nothing there is tested.
const lsmCell = untest + ": lsm mode is not implemented yet"

// threats is the table (README.md, between the threat-model markers).
var threats = []threat{
	{"curl", "curl on the socket path", refused + ": path gate (EPERM)", refused + ": path gate, and the kernel's permission check (EACCES)", lsmCell, lsmCell},
	{"python", "python on the socket path", refused + ": path gate (EPERM)", refused + ": path gate, and the kernel's permission check", lsmCell, lsmCell},
	{"nc", "`nc -U` on the socket path", refused + ": path gate (EPERM)", refused + ": path gate, and the kernel's permission check", lsmCell, lsmCell},
	{"symlink", "curl through a symlink to the socket", refused + ": post-connect check kills before connect() returns", refused + ": kernel permission check (EACCES)", lsmCell, lsmCell},
	{"hardlink", "curl through a hard link to the socket (root made it; protected_hardlinks stops users)", refused + ": post-connect check", refused + ": kernel permission check", lsmCell, lsmCell},
	{"proc-root", "curl through /proc/self/root/...", refused + ": post-connect check", refused + ": kernel permission check", lsmCell, lsmCell},
	{"userns-bind", "user namespace bind mount of the socket (unshare -Urm, mount --bind)", refused + ": post-connect check (same inode)", refused + ": kernel permission check (the namespace maps no group of the socket)", lsmCell, lsmCell},
	{"iouring", "io_uring connect to the socket path", refused + ": path gate (connect_unix runs inside the connect, io_uring too)", refused + ": path gate, and the kernel's permission check", lsmCell, lsmCell},
	{"iouring-symlink", "io_uring connect through a symlink", through + ": no syscall tracepoint fires, so the post-connect check never runs; use setgid access", refused + ": kernel permission check", lsmCell, lsmCell},
	{"thread-race", "a thread writes a request while another connects through a symlink", race + ": the post-connect kill lands after connect() completed; the other thread may send first", refused + ": kernel permission check", lsmCell, lsmCell},
	{"memfd-copy", "memfd copy of the CLI, run with execveat", refused + ": a new inode is not a trusted client; path gate", refused + ": no setgid bit on the copy; kernel permission check", lsmCell, lsmCell},
	{"plain-copy", "plain copy of the CLI", refused + ": not a trusted client; path gate", refused + ": no setgid bit on the copy; kernel permission check", lsmCell, lsmCell},
	{"plugin-home", "plugin shadowing compose in ~/.docker/cli-plugins", refused + ": it runs, without a verdict; its connects are gated", refused + ": killed at exec (setgid-untrusted-exec)", lsmCell, lsmCell},
	{"plugin-config", "plugin shadowing compose via --config", refused + ": it runs, without a verdict; its connects are gated", refused + ": killed at exec (setgid-untrusted-exec)", lsmCell, lsmCell},
	{"credhelper", "credsStore credential helper", refused + ": it runs, without a verdict; its connects are gated", refused + ": killed at exec (setgid-untrusted-exec)", lsmCell, lsmCell},
	{"ssh", "`ssh` for DOCKER_HOST=ssh:// (a fake ssh earlier in PATH)", refused + ": it runs, without a verdict; its connects are gated", refused + ": killed at exec (setgid-untrusted-exec)", lsmCell, lsmCell},
	{"ptrace", "ptrace of a running CLI", through + ": same uid and dumpable; `dockwatch sandbox` denies ptrace", refused + ": the setgid CLI is not dumpable (EPERM)", lsmCell, lsmCell},
	{"pidfd-getfd", "pidfd_getfd of a running CLI's socket", through + ": same uid and dumpable; `dockwatch sandbox` denies pidfd_getfd", refused + ": the setgid CLI is not dumpable (EPERM)", lsmCell, lsmCell},
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

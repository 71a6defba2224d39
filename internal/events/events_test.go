package events

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/policy"
)

var (
	tablesOnce sync.Once
	tables     *policy.Tables
	tablesErr  error
)

func defaultTables(t testing.TB) *policy.Tables {
	t.Helper()
	tablesOnce.Do(func() { tables, tablesErr = policy.Compile(policy.DefaultPolicy()) })
	if tablesErr != nil {
		t.Fatalf("compile default policy: %v", tablesErr)
	}
	return tables
}

var dockerExe = FileID{Dev: 8<<20 | 1, Ino: 4242}

// kernelRecord is what the exec hook sends when it agrees with Go.
func kernelRecord(t *testing.T, argv ...string) Record {
	tb := defaultTables(t)
	res := tb.Eval(policy.BinDocker, argv)
	r := Record{
		Kind: RecordExec, KtimeNs: 5e9, StartBoottime: 4e9, Pid: 100, Tgid: 100, Ppid: 1, UID: 64123, EUID: 64123,
		Exe: dockerExe, Bin: uint8(policy.BinDocker), Verdict: res.Verdict, Result: res, Argv: argv,
	}
	if res.Verdict == policy.VerdictBlock {
		r.Action = KernelKilled
	}
	return r
}

type fakeKiller struct {
	calls []int
	err   error
}

func (k *fakeKiller) kill(pid int, start uint64) error {
	k.calls = append(k.calls, pid)
	return k.err
}

func newProc(t *testing.T, k *fakeKiller) *Processor {
	return &Processor{
		Tables: defaultTables(t), Clients: map[FileID]string{dockerExe: "/usr/bin/docker"}, Mode: "tracepoint",
		Kill: k.kill, UserName: func(uid uint32) string { return "u" + string(rune('0'+uid%10)) },
		ExePath: func(int) string { return "/usr/bin/curl" },
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	r := kernelRecord(t, "docker", "container", "exec", "-it", "c", "sh")
	r.Flags = FlagPtraced
	r.Path = ""
	got, err := Decode(Encode(r))
	if err != nil {
		t.Fatal(err)
	}
	r.ArgvBytes = len(Encode(r)) - HeaderSize
	if got.Result != r.Result || strings.Join(got.Argv, "|") != strings.Join(r.Argv, "|") ||
		got.Exe != r.Exe || got.Tgid != r.Tgid || got.Flags != r.Flags || got.ArgvBytes != r.ArgvBytes ||
		got.StartBoottime != r.StartBoottime || got.Verdict != r.Verdict || got.Action != r.Action {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
	}

	c := Record{Kind: RecordConnect, Bin: BinNone, Path: "/run/docker.sock", Action: KernelDenied, Verdict: policy.VerdictNotClient}
	got, err = Decode(Encode(c))
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != c.Path || got.Argv != nil {
		t.Errorf("connect round trip: %+v", got)
	}
}

func TestDecodeMalformed(t *testing.T) {
	good := Encode(kernelRecord(t, "docker", "ps"))
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	cases := map[string][]byte{
		"empty":          nil,
		"short header":   good[:HeaderSize-1],
		"argv cut":       good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"unknown kind":   mutate(func(b []byte) []byte { b[offKind] = 9; return b }),
		"bad binary":     mutate(func(b []byte) []byte { b[offBin] = 7; return b }),
		"bad action":     mutate(func(b []byte) []byte { b[offAction] = 3; return b }),
		"path too long":  mutate(func(b []byte) []byte { b[offPathLen] = 200; return b }),
		"argv len huge":  mutate(func(b []byte) []byte { b[offArgvLen+3] = 0x80; return b }),
	}
	for name, raw := range cases {
		if _, err := Decode(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	// A malformed record is reported as a daemon event and counted, not dropped silently.
	p := newProc(t, &fakeKiller{})
	evs := p.Handle(good[:10])
	if len(evs) != 1 || evs[0].Kind != KindDaemon || !strings.Contains(evs[0].Message, "malformed") {
		t.Errorf("malformed record events: %+v", evs)
	}
	if p.Stats().Malformed != 1 {
		t.Errorf("malformed count %d, want 1", p.Stats().Malformed)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Record{Kind: RecordExec, Argv: []string{"docker", "ps"}}))
	f.Add(Encode(Record{Kind: RecordConnect, Path: "/run/docker.sock", Bin: BinNone}))
	f.Add(Encode(tamperRecord(KernelDenied, 0)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Decode(raw)
		if err != nil {
			return
		}
		if r.ArgvBytes != len(raw)-HeaderSize {
			t.Fatalf("argv bytes %d of %d", r.ArgvBytes, len(raw))
		}
	})
}

func TestExecEventAgreement(t *testing.T) {
	k := &fakeKiller{}
	p := newProc(t, k)
	evs := p.Handle(Encode(kernelRecord(t, "docker", "exec", "c", "sh")))
	if len(evs) != 1 {
		t.Fatalf("events %+v, want one exec event", evs)
	}
	ev := evs[0]
	if ev.Kind != KindExec || ev.Verdict != "block" || ev.Action != ActionKilled || ev.Rule != "blocked-subcommand" ||
		ev.Command != "exec" || ev.Exe != "/usr/bin/docker" || ev.Pid != 100 || ev.UID == nil || *ev.UID != 64123 ||
		ev.V != 1 || ev.Seq != 1 || ev.Mode != "tracepoint" {
		t.Errorf("exec event %+v", ev)
	}
	if len(k.calls) != 0 {
		t.Errorf("agreement must not kill from userspace, killed %v", k.calls)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"v":1`, `"kind":"exec"`, `"verdict":"block"`, `"action":"killed"`, `"argv":["docker","exec","c","sh"]`, `"uid":64123`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("JSON %s lacks %s", data, key)
		}
	}
}

func TestDivergenceKillsWhatTheKernelAllowed(t *testing.T) {
	k := &fakeKiller{}
	p := newProc(t, k)
	// The kernel said ALLOW for an argv Go blocks: userspace must kill it.
	r := kernelRecord(t, "docker", "ps")
	r.Argv = []string{"docker", "exec", "c", "sh"}
	evs := p.Handle(Encode(r))
	if len(evs) != 2 || evs[1].Kind != KindDivergence {
		t.Fatalf("events %+v, want exec and divergence", evs)
	}
	div := evs[1]
	if div.Verdict != "block" || div.Kernel != "allow" || div.Action != ActionKilled {
		t.Errorf("divergence %+v", div)
	}
	if len(k.calls) != 1 || k.calls[0] != 100 {
		t.Errorf("kills %v, want [100]", k.calls)
	}
	if s := p.Stats(); s.Divergences != 1 || s.DivergenceKills != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestDivergenceWithoutKill(t *testing.T) {
	k := &fakeKiller{}
	p := newProc(t, k)
	// The kernel killed something Go allows: report, nothing left to kill.
	r := kernelRecord(t, "docker", "exec", "c", "sh")
	r.Argv = []string{"docker", "ps"}
	evs := p.Handle(Encode(r))
	if len(evs) != 2 || evs[1].Action != ActionNone || evs[1].Verdict != "allow" || evs[1].Kernel != "block" {
		t.Fatalf("events %+v", evs)
	}
	if len(k.calls) != 0 {
		t.Errorf("killed %v", k.calls)
	}
	// Results differing only in detail (same verdict) are divergences too, without a kill.
	r = kernelRecord(t, "docker", "ps")
	r.Result.Node++
	evs = p.Handle(Encode(r))
	if len(evs) != 2 || evs[1].Action != ActionNone {
		t.Fatalf("events %+v", evs)
	}
	// A failed kill is reported in the event and counted.
	k.err = ErrRecycled
	r = kernelRecord(t, "docker", "ps")
	r.Argv = []string{"docker", "cp", "c:/etc", "."}
	evs = p.Handle(Encode(r))
	if len(evs) != 2 || evs[1].Action != ActionNone || !strings.Contains(evs[1].Reason, "kill failed") {
		t.Fatalf("events %+v", evs)
	}
	if p.Stats().KillFailures != 1 {
		t.Errorf("stats %+v", p.Stats())
	}
}

func TestNoSecondOpinionWhenKernelCannotJudge(t *testing.T) {
	k := &fakeKiller{}
	p := newProc(t, k)
	// Truncated argv: the record holds only part of it.
	r := kernelRecord(t, "docker", "ps")
	r.Verdict, r.Result = policy.VerdictUndecided, policy.Result{Verdict: policy.VerdictUndecided}
	r.Action, r.Flags = KernelKilled, FlagArgvTruncated
	if evs := p.Handle(Encode(r)); len(evs) != 1 || !evs[0].ArgvTruncated || evs[0].Verdict != "undecided" {
		t.Errorf("truncated: %+v", evs)
	}
	// Ptraced client: BLOCK whatever the argv says.
	r = kernelRecord(t, "docker", "ps")
	r.Verdict, r.Action, r.Flags = policy.VerdictBlock, KernelKilled, FlagPtraced
	if evs := p.Handle(Encode(r)); len(evs) != 1 || evs[0].Rule != "ptraced" {
		t.Errorf("ptraced: %+v", evs)
	}
	if len(k.calls) != 0 {
		t.Errorf("killed %v", k.calls)
	}
}

func TestConnectEvent(t *testing.T) {
	p := newProc(t, &fakeKiller{})
	evs := p.Handle(Encode(Record{Kind: RecordConnect, Bin: BinNone, Tgid: 7, UID: 64123, Path: "/run/docker.sock",
		Action: KernelDenied, Verdict: policy.VerdictNotClient}))
	if len(evs) != 1 {
		t.Fatal(evs)
	}
	ev := evs[0]
	if ev.Kind != KindConnect || ev.Action != ActionDenied || ev.Socket != "/run/docker.sock" || ev.Verdict != "not-client" ||
		ev.Exe != "/usr/bin/curl" || ev.Rule != "protected-socket" {
		t.Errorf("connect event %+v", ev)
	}
	evs = p.Handle(Encode(Record{Kind: RecordConnect, Bin: BinNone, Tgid: 7, Action: KernelKilled, Flags: FlagPostConnect,
		Sock: FileID{Dev: 0<<20 | 25, Ino: 99}}))
	if ev := evs[0]; ev.Action != ActionKilled || ev.Verdict != "none" || !strings.Contains(ev.Socket, "ino 99") {
		t.Errorf("post-connect event %+v", ev)
	}
}

// chanSource feeds records and then fails.
type chanSource struct{ recs [][]byte }

var errDone = errors.New("done")

func (s *chanSource) Read() ([]byte, error) {
	if len(s.recs) == 0 {
		return nil, errDone
	}
	r := s.recs[0]
	s.recs = s.recs[1:]
	return r, nil
}

func TestRunNeverBlocksOnSlowConsumer(t *testing.T) {
	p := newProc(t, &fakeKiller{})
	src := &chanSource{}
	for range 10 {
		src.recs = append(src.recs, Encode(kernelRecord(t, "docker", "ps")))
	}
	out := make(chan Event, 3) // nobody reads it
	done := make(chan error, 1)
	go func() { done <- p.Run(src, out) }()
	select {
	case err := <-done:
		if !errors.Is(err, errDone) {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run blocked on a full channel")
	}
	if s := p.Stats(); s.Dropped != 7 || s.Records != 10 {
		t.Errorf("stats %+v, want 10 records and 7 dropped", s)
	}
}

func TestParseStartTicks(t *testing.T) {
	stat := []byte("1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 200\n")
	got, err := parseStartTicks(stat)
	if err != nil || got != 98765 {
		t.Errorf("parseStartTicks = %d, %v; want 98765", got, err)
	}
	if _, err := parseStartTicks([]byte("garbage")); err == nil {
		t.Error("parseStartTicks accepted garbage")
	}
}

func TestKillProcessChecksStartTime(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	ticks, err := procStartTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	const tick = uint64(time.Second) / 100
	// A different start time means another process: refuse.
	if err := KillProcess(pid, (ticks+5)*tick); !errors.Is(err, ErrRecycled) {
		t.Fatalf("KillProcess with a wrong start time: %v, want ErrRecycled", err)
	}
	if err := KillProcess(pid, ticks*tick+tick/2); err != nil {
		t.Fatalf("KillProcess: %v", err)
	}
	err = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("sleep ended with %v, want SIGKILL", err)
	}
}

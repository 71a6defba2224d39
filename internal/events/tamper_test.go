package events

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// tamperRecord is what lsm/ptrace_access_check sends when pid 300 (uid 64123) asks for
// PTRACE_MODE_ATTACH|REALCREDS on the vetted client 200.
func tamperRecord(action, flags uint8) Record {
	return Record{Kind: RecordTamper, KtimeNs: 5e9, Pid: 300, Tgid: 300, Ppid: 1, UID: 64123, EUID: 64123,
		Sock: FileID{Dev: 0x12, Ino: 200}, Bin: uint8(policy.BinDocker), Verdict: policy.VerdictAllow,
		Action: action, Flags: flags}
}

func TestTamperEvent(t *testing.T) {
	k := &fakeKiller{}
	p := newProc(t, k)
	p.Mode = "lsm"
	evs := p.Handle(Encode(tamperRecord(KernelDenied, 0)))
	if len(evs) != 1 {
		t.Fatalf("events %+v, want one tamper event", evs)
	}
	ev := evs[0]
	if ev.Kind != KindTamper || ev.Verdict != "block" || ev.Action != ActionDenied || ev.Rule != RulePtraceClient ||
		ev.Pid != 300 || ev.Binary != "docker" || ev.Mode != "lsm" || ev.Exe != "/usr/bin/curl" {
		t.Errorf("tamper event %+v", ev)
	}
	for _, want := range []string{"PTRACE_MODE_ATTACH|PTRACE_MODE_REALCREDS", "pid 200", "verdict allow", "denied (EPERM)"} {
		if !strings.Contains(ev.Reason, want) {
			t.Errorf("reason %q lacks %q", ev.Reason, want)
		}
	}
	if len(k.calls) != 0 {
		t.Errorf("a denied access needs no kill, killed %v", k.calls)
	}
	if !Severe(ev) || !Alertable(ev, false) {
		t.Errorf("a denied tamper must be severe and alert like a block: %+v", ev)
	}
	if txt := AlertText(ev); !strings.Contains(txt, "tamper") || !strings.Contains(txt, "pid 300") || !strings.Contains(txt, "pid 200") {
		t.Errorf("alert text %q", txt)
	}
	if line := Text(ev); !strings.Contains(line, "tamper docker") || !strings.Contains(line, RulePtraceClient) {
		t.Errorf("text %q", line)
	}

	audit := p.Handle(Encode(tamperRecord(KernelNone, FlagAudit)))[0]
	if audit.Verdict != "audit" || audit.Action != ActionNone || !strings.Contains(audit.Reason, "audit only") {
		t.Errorf("audit tamper event %+v", audit)
	}
	if Alertable(audit, false) || !Alertable(audit, true) {
		t.Errorf("an audit tamper alerts only with audit alerts on: %+v", audit)
	}

	m := NewMetrics(func() Counts { return Counts{} })
	m.Observe(ev, time.Now())
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `dockwatch_events_total{action="denied",kind="tamper",rule="ptrace-client",verdict="block"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %q", want)
	}
}

func TestTamperRecordMalformed(t *testing.T) {
	r := tamperRecord(KernelDenied, 0)
	raw := Encode(r)
	raw = append(raw, 'x', 0) // argv bytes on a tamper record
	raw[offArgvLen] = 2
	if _, err := Decode(raw); err == nil || !strings.Contains(err.Error(), "kind 3 record with 2 bytes of argv") {
		t.Errorf("decode of a tamper record with argv: %v", err)
	}
}

// TestTamperedEnvExec: the kernel made "docker ps" BLOCK for LD_PRELOAD; the event says why
// and is no divergence although the argv alone is allowed.
func TestTamperedEnvExec(t *testing.T) {
	k := &fakeKiller{}
	p := newProc(t, k)
	r := kernelRecord(t, "docker", "ps")
	r.Verdict, r.Action, r.Flags = policy.VerdictBlock, KernelKilled, FlagTamperedEnv
	evs := p.Handle(Encode(r))
	if len(evs) != 1 {
		t.Fatalf("events %+v, want one exec event and no divergence", evs)
	}
	ev := evs[0]
	if ev.Kind != KindExec || ev.Verdict != "block" || ev.Action != ActionKilled || ev.Rule != RuleTamperedEnv ||
		ev.Command != "ps" || !strings.Contains(ev.Reason, "LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH") {
		t.Errorf("tampered-env event %+v", ev)
	}
	if st := p.Stats(); st.Divergences != 0 || len(k.calls) != 0 {
		t.Errorf("divergences %d, kills %v; want none", st.Divergences, k.calls)
	}
	if !Alertable(ev, false) {
		t.Errorf("a tampered-env kill must alert")
	}
}

package events

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func ev(seq uint64, verdict, user string) Event {
	return Event{V: 1, Seq: seq, Time: time.Now().UTC(), Kind: KindExec, Verdict: verdict, User: user,
		Action: ActionNone, Command: "exec"}
}

func TestHubHistoryRing(t *testing.T) {
	h := NewHub(3)
	for i := uint64(1); i <= 5; i++ {
		h.Publish(ev(i, "allow", "u"))
	}
	hist := h.History()
	if len(hist) != 3 || hist[0].Seq != 3 || hist[2].Seq != 5 {
		t.Errorf("history %+v, want seq 3..5", hist)
	}
}

func TestHubSlowSubscriberDropsAndCounts(t *testing.T) {
	h := NewHub(10)
	_, sub := h.Subscribe(2)
	defer sub.Close()
	done := make(chan struct{})
	go func() {
		for i := uint64(1); i <= 100; i++ {
			h.Publish(ev(i, "block", "u"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	if sub.Dropped() != 98 || h.Stats().Dropped != 98 || h.Stats().Clients != 1 {
		t.Errorf("dropped %d (hub %+v), want 98", sub.Dropped(), h.Stats())
	}
	sub.Close()
	if h.Stats().Clients != 0 {
		t.Errorf("clients after Close: %d", h.Stats().Clients)
	}
}

func TestRequestMatch(t *testing.T) {
	uid := uint32(1001)
	e := ev(1, "block", "alice")
	e.UID = &uid
	for _, c := range []struct {
		req  Request
		want bool
	}{
		{Request{}, true},
		{Request{Verdict: "block"}, true},
		{Request{Verdict: "allow"}, false},
		{Request{User: "alice"}, true},
		{Request{User: "1001"}, true},
		{Request{User: "bob"}, false},
		{Request{Since: e.Time.Add(-time.Second)}, true},
		{Request{Since: e.Time.Add(time.Second)}, false},
	} {
		if got := c.req.Match(e); got != c.want {
			t.Errorf("%+v.Match = %v, want %v", c.req, got, c.want)
		}
	}
}

func TestServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ev.sock")
	ln, err := Listen(path, os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", st, err)
	}
	h := NewHub(100)
	for i := uint64(1); i <= 5; i++ {
		v := "allow"
		if i%2 == 0 {
			v = "block"
		}
		h.Publish(ev(i, v, "u"))
	}
	srv := &Server{Hub: h, Status: func() any { return map[string]int{"ok": 1} }}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	ask := func(req string) (net.Conn, *bufio.Scanner) {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req + "\n"))
		return c, bufio.NewScanner(c)
	}
	lines := func(req string) []string {
		c, sc := ask(req)
		defer c.Close()
		var out []string
		for sc.Scan() {
			out = append(out, sc.Text())
		}
		return out
	}
	if got := lines(`{"op":"events","n":1,"verdict":"allow"}`); len(got) != 1 || !strings.Contains(got[0], `"seq":5`) {
		t.Errorf("last allow: %v", got)
	}
	if got := lines(`{"op":"events"}`); len(got) != 5 {
		t.Errorf("all: %d lines", len(got))
	}
	if got := lines(`{"op":"status"}`); len(got) != 1 || got[0] != `{"ok":1}` {
		t.Errorf("status: %v", got)
	}
	if got := lines(`{"op":"nope"}`); len(got) != 1 || !strings.Contains(got[0], "unknown op") {
		t.Errorf("bad op: %v", got)
	}
	if got := lines(`not json`); len(got) != 1 || !strings.Contains(got[0], "error") {
		t.Errorf("bad request: %v", got)
	}

	// Follow: history, then live events that match.
	c, sc := ask(`{"op":"events","follow":true,"n":1,"verdict":"block"}`)
	defer c.Close()
	next := func() Event {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if !sc.Scan() {
			t.Fatalf("follow: %v", sc.Err())
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := next(); e.Seq != 4 {
		t.Errorf("follow history: seq %d, want 4", e.Seq)
	}
	for h.Stats().Clients == 0 {
		time.Sleep(time.Millisecond)
	}
	h.Publish(ev(6, "allow", "u"))
	h.Publish(ev(7, "block", "u"))
	if e := next(); e.Seq != 7 {
		t.Errorf("follow live: seq %d, want 7", e.Seq)
	}
}

func TestAlerterDedupRetrySignature(t *testing.T) {
	var calls, fails atomic.Int32
	var lastSig, lastBody atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		calls.Add(1)
		if fails.Add(-1) >= 0 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		lastSig.Store(r.Header.Get(SignatureHeader))
		lastBody.Store(body)
	}))
	defer srv.Close()
	a := &Alerter{URL: srv.URL, Secret: []byte("s3cret"), DedupWindow: time.Hour, Backoff: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)

	fails.Store(2) // two 503s, then success
	blocked := ev(1, "block", "alice")
	blocked.Action = ActionKilled
	if !a.Offer(blocked) {
		t.Fatal("first block not queued")
	}
	for i := 0; i < 10; i++ {
		if a.Offer(blocked) {
			t.Fatal("duplicate (user, command) queued within the window")
		}
	}
	if a.Offer(ev(2, "allow", "alice")) {
		t.Error("an allow was queued")
	}
	other := blocked
	other.User = "bob"
	deadline := time.Now().Add(5 * time.Second)
	for a.Stats().Sent < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := a.Stats()
	if st.Sent != 1 || st.Retries != 2 || st.Deduped != 10 || calls.Load() != 3 {
		t.Errorf("stats %+v after %d calls, want 1 sent after 2 retries, 10 deduplicated", st, calls.Load())
	}
	body, _ := lastBody.Load().([]byte)
	if sig, _ := lastSig.Load().(string); sig != Sign([]byte("s3cret"), body) {
		t.Errorf("signature %q does not match the body", sig)
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil || !strings.Contains(p.Text, "alice") || p.Event.Seq != 1 {
		t.Errorf("payload %s: %v", body, err)
	}
	if !a.Offer(other) {
		t.Error("another user's block was deduplicated")
	}
}

func TestAlerterDeadWebhookNeverBlocks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	a := &Alerter{URL: url, Backoff: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	start := time.Now()
	for i := 0; i < 10000; i++ {
		e := ev(uint64(i), "block", "u")
		e.Command = "cmd" + strings.Repeat("x", i%50) + string(rune('a'+i%26))
		e.User = "u" + string(rune('a'+i%26)) + strings.Repeat("y", i/26%400)
		a.Offer(e)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("10000 offers took %v", took)
	}
	if st := a.Stats(); st.Dropped == 0 || st.Sent != 0 {
		t.Errorf("stats %+v: want drops counted and nothing sent", st)
	}
}

func TestTextAndJournalFields(t *testing.T) {
	uid := uint32(1001)
	e := Event{V: 1, Time: time.Now(), Seq: 9, Kind: KindExec, Verdict: "block", Action: ActionKilled,
		Rule: "blocked-subcommand", Command: "container exec", Argv: []string{"docker", "container", "exec", "c", "sh"},
		Pid: 42, Ppid: 1, UID: &uid, User: "ai-worker"}
	line := Text(e)
	for _, want := range []string{"ai-worker", "block", "killed", "container exec", "blocked-subcommand", "docker container exec c sh", "pid 42"} {
		if !strings.Contains(line, want) {
			t.Errorf("text %q lacks %q", line, want)
		}
	}
	f := JournalFields(e)
	for k, v := range map[string]string{"DOCKWATCH_VERDICT": "block", "DOCKWATCH_RULE": "blocked-subcommand",
		"DOCKWATCH_COMMAND": "container exec", "DOCKWATCH_USER": "ai-worker", "DOCKWATCH_PID": "42", "DOCKWATCH_UID": "1001"} {
		if f[k] != v {
			t.Errorf("%s = %q, want %q", k, f[k], v)
		}
	}
	if !Severe(e) || Severe(Event{Kind: KindExec, Verdict: "allow", Action: ActionNone}) {
		t.Error("Severe: blocks are severe, allows are not")
	}
}

func TestMetricsObserve(t *testing.T) {
	m := NewMetrics(func() Counts { return Counts{RingBufDrops: 7, EnforcementUp: true} })
	e := ev(1, "block", "u")
	e.Rule = "blocked-subcommand"
	m.Observe(e, e.Time.Add(time.Millisecond))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`dockwatch_events_total{action="none",kind="exec",rule="blocked-subcommand",verdict="block"} 1`,
		"dockwatch_ringbuf_drops_total 7", "dockwatch_enforcement_up 1", "dockwatch_exec_to_verdict_seconds_count 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// Package daemon tests the operator's side of `dockwatch run` with the real binary on this
// host: the event socket and `dockwatch events`, webhook alerts, metrics, restarts and reloads
// without an enforcement gap, floods, and who may read the events. It needs root, BPF and
// Debian's dockerd; it skips when one is missing.
package daemon

import (
	"bufio"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/events"
	"github.com/dockwatch/dockwatch/internal/loader"
	"github.com/dockwatch/dockwatch/internal/testutil/daemon"
	"github.com/dockwatch/dockwatch/internal/testutil/dockerd"
	"github.com/dockwatch/dockwatch/internal/testutil/gobuild"
	"github.com/dockwatch/dockwatch/internal/testutil/sysuser"
)

// env is what every subtest shares: a private dockerd, the worker (supervised, in the socket's
// group), the events group and a built dockwatch.
type env struct {
	dir     string
	bin     string
	d       *dockerd.Daemon
	worker  *sysuser.User
	reader  *sysuser.User // in the events group
	outside *sysuser.User // in no group of ours
	evGroup *sysuser.Group
}

func TestDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root (euid %d)", os.Geteuid())
	}
	f := loader.ProbeFeatures()
	if _, err := loader.MakePlan(f, "group"); err != nil {
		t.Skipf("this kernel cannot run the enforcement programs: %v (%s)", err, strings.Join(f.Notes, "; "))
	}
	e := &env{}
	sockGroup := sysuser.NewGroup(t)
	e.evGroup = sysuser.NewGroup(t)
	e.d = dockerd.Start(t, dockerd.Options{Group: sockGroup.Name})
	e.worker = sysuser.NewUser(t, sockGroup)
	e.reader = sysuser.NewUser(t, e.evGroup)
	e.outside = sysuser.NewUser(t)
	e.d.MustDocker(t, "run", "-d", "--name", "ctr", dockerd.Image, "sleep", "3600")
	dir, err := os.MkdirTemp("", "dwdm") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.dir = dir
	e.bin = gobuild.Dockwatch(t, dir)

	t.Run("events-webhook-metrics", e.testEventsWebhookMetrics)
	t.Run("restart-reload", e.testRestartReload)
	t.Run("flood", e.testFlood)
	t.Run("socket-group", e.testSocketGroup)
	t.Run("self-seccomp", e.testSelfSeccomp)
}

// daemonConfig is what a subtest changes in the config.
type daemonConfig struct {
	block       []string // policy.block; nil keeps the default
	webhook     string
	secretFile  string
	dedup       string
	metrics     string
	history     int
	invalidLine string // appended under [policy]: makes the config invalid
}

func (e *env) writeConfig(t *testing.T, path string, c daemonConfig) {
	t.Helper()
	q := strconv.Quote
	var extra strings.Builder
	extra.WriteString("[policy]\nmode = \"enforce\"\n")
	if c.block != nil {
		var qs []string
		for _, s := range c.block {
			qs = append(qs, q(s))
		}
		fmt.Fprintf(&extra, "block = [%s]\n", strings.Join(qs, ", "))
	}
	if c.invalidLine != "" {
		extra.WriteString(c.invalidLine + "\n")
	}
	fmt.Fprintf(&extra, "\n[alerts]\nwebhook_url = %s\nwebhook_secret_file = %s\n", q(c.webhook), q(c.secretFile))
	if c.dedup != "" {
		fmt.Fprintf(&extra, "dedup_window = %s\n", q(c.dedup))
	}
	history := c.history
	if history == 0 {
		history = 1000
	}
	cfg := daemon.Config{Users: []string{e.worker.Name}, Sockets: []string{e.d.Socket}, Clients: []string{e.d.CLI},
		PluginDirs: []string{filepath.Join(e.dir, "plugins")}, Access: "group", EventsSocket: e.socket(),
		EventsGroup: e.evGroup.Name, History: history, Metrics: c.metrics, Extra: extra.String()}
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
}

// pinDir is a fresh pin dir for one subtest. When the subtest ends, the daemons are stopped
// and `dockwatch unload` must leave nothing behind.
func (e *env) pinDir(t *testing.T) string { return daemon.PinDir(t, e.bin) }

// start runs the daemon and waits for its ready file. stdout goes to a file: nobody reading it
// must not matter.
func (e *env) start(t *testing.T, cfg, pins string, extraArgs ...string) *daemon.Daemon {
	t.Helper()
	out, err := os.OpenFile(filepath.Join(e.dir, "stdout.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	return daemon.StartTest(t, daemon.Options{Bin: e.bin, Config: cfg, ReadyFile: filepath.Join(e.dir, "ready"),
		PinDir: pins, Args: extraArgs, Stdout: out})
}

// stop sends SIGTERM and waits; the pinned programs stay.
func stop(t *testing.T, d *daemon.Daemon) {
	t.Helper()
	if err := d.Stop(); err != nil {
		t.Error(err)
	}
}

// reload writes c to the config at path, sends d SIGHUP and waits until the daemon's stderr
// says want n times in all.
func (e *env) reload(t *testing.T, d *daemon.Daemon, path string, c daemonConfig, want string, n int) {
	t.Helper()
	e.writeConfig(t, path, c)
	if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("%q %d times on stderr after SIGHUP", want, n), 20*time.Second, func() bool {
		return strings.Count(d.Stderr(), want) >= n
	})
}

// docker runs the docker CLI as the worker and reports whether SIGKILL ended it.
func (e *env) docker(t *testing.T, args ...string) (killed bool, res sysuser.Result) {
	t.Helper()
	res, err := e.worker.Run(30*time.Second, e.d.Env(), e.d.CLI, args...)
	if err != nil {
		t.Fatalf("docker %v as the worker: %v", args, err)
	}
	return res.Killed(), res
}

// dockwatch runs a dockwatch client command as root (or as u) and returns its stdout.
func (e *env) dockwatch(t *testing.T, u *sysuser.User, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if u == nil {
		cmd = exec.CommandContext(ctx, e.bin, args...)
	} else {
		var err error
		if cmd, err = u.Command(ctx, nil, e.bin, args...); err != nil {
			t.Fatal(err)
		}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("dockwatch %v: %w: %s", args, err, stderr.String())
	}
	return string(out), nil
}

func (e *env) socket() string { return filepath.Join(e.dir, "ev.sock") }

// webhookReceiver records the alerts it gets.
type webhookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	alerts []events.Payload
	bad    []string
}

func newWebhookReceiver(t *testing.T, secret []byte) *webhookReceiver {
	w := &webhookReceiver{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		defer w.mu.Unlock()
		if got := r.Header.Get(events.SignatureHeader); !hmac.Equal([]byte(got), []byte(events.Sign(secret, body))) {
			w.bad = append(w.bad, "bad signature "+got)
		}
		var p events.Payload
		if err := json.Unmarshal(body, &p); err != nil || p.Text == "" {
			w.bad = append(w.bad, fmt.Sprintf("bad body %q: %v", body, err))
		}
		w.alerts = append(w.alerts, p)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookReceiver) got() ([]events.Payload, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]events.Payload(nil), w.alerts...), append([]string(nil), w.bad...)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// metric reads one sample from /metrics: the sum over the series whose name and labels
// contain every part of match.
func metric(t *testing.T, addr string, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) testEventsWebhookMetrics(t *testing.T) {
	secret := []byte("test-secret-" + strconv.Itoa(os.Getpid()))
	secretFile := filepath.Join(e.dir, "webhook.secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	hook := newWebhookReceiver(t, secret)
	metricsAddr := freePort(t)
	cfg := filepath.Join(e.dir, "ewm.toml")
	e.writeConfig(t, cfg, daemonConfig{webhook: hook.srv.URL, secretFile: secretFile, dedup: "1h", metrics: metricsAddr})
	e.start(t, cfg, e.pinDir(t))

	// A live follower, started before the attempts.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := exec.CommandContext(ctx, e.bin, "events", "-f", "-o", "json", "--verdict", "block", "--socket", e.socket())
	followOut, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = follow.Wait() }()
	followed := make(chan events.Event, 64)
	go func() {
		sc := bufio.NewScanner(followOut)
		for sc.Scan() {
			var ev events.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				followed <- ev
			}
		}
	}()
	waitFor(t, "the follower to subscribe", 10*time.Second, func() bool {
		return metric(t, metricsAddr, "dockwatch_stream_clients") >= 1
	})

	const burst = 5
	for i := 0; i < burst; i++ {
		if killed, res := e.docker(t, "exec", "ctr", "true"); !killed {
			t.Fatalf("docker exec by the supervised user was not killed: %v", res)
		}
	}
	// The latest event, as JSON.
	var last events.Event
	waitFor(t, "the block event in the history", 10*time.Second, func() bool {
		out, err := e.dockwatch(t, nil, "events", "-n", "1", "-o", "json", "--verdict", "block", "--socket", e.socket())
		return err == nil && json.Unmarshal([]byte(out), &last) == nil && last.Seq != 0
	})
	out, err := e.dockwatch(t, nil, "events", "-n", "1", "-o", "json", "--socket", e.socket())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &last); err != nil {
		t.Fatalf("events -n 1 -o json: %v\n%s", err, out)
	}
	if last.Kind != events.KindExec || last.Verdict != "block" || last.Rule != "blocked-subcommand" ||
		last.Command != "exec" || last.User != e.worker.Name || last.Action != events.ActionKilled ||
		len(last.Argv) != 4 || strings.Join(last.Argv[1:], " ") != "exec ctr true" {
		t.Errorf("last event %+v, want the worker's killed docker exec", last)
	}
	text, err := e.dockwatch(t, nil, "events", "-n", "2", "--socket", e.socket())
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(text), "\n"); len(lines) != 2 ||
		!strings.Contains(lines[1], e.worker.Name) || !strings.Contains(lines[1], "block") ||
		!strings.Contains(lines[1], "blocked-subcommand") || !strings.Contains(lines[1], "exec") {
		t.Errorf("events -n 2 (text):\n%s", text)
	}

	// The follower saw them all, live.
	for i := 0; i < burst; i++ {
		select {
		case ev := <-followed:
			if ev.Verdict != "block" || ev.Command != "exec" {
				t.Errorf("followed event %+v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("follower got %d of %d block events", i, burst)
		}
	}
	// And keeps following.
	if killed, _ := e.docker(t, "commit", "ctr"); !killed {
		t.Errorf("docker commit was not killed")
	}
	select {
	case ev := <-followed:
		if ev.Command != "commit" {
			t.Errorf("followed %+v, want the commit", ev)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("follower did not get the live commit event")
	}

	// Exactly one webhook for the exec burst (dedup per user and command), one for commit.
	time.Sleep(1500 * time.Millisecond)
	alerts, bad := hook.got()
	if len(bad) > 0 {
		t.Errorf("webhook problems: %v", bad)
	}
	var execAlerts, commitAlerts int
	for _, a := range alerts {
		switch a.Event.Command {
		case "exec":
			execAlerts++
		case "commit":
			commitAlerts++
		}
		if !strings.Contains(a.Text, e.worker.Name) {
			t.Errorf("alert text %q does not name the user", a.Text)
		}
	}
	if execAlerts != 1 || commitAlerts != 1 {
		t.Errorf("webhook got %d exec and %d commit alerts, want 1 and 1: %+v", execAlerts, commitAlerts, alerts)
	}

	// /metrics counts them.
	if n := metric(t, metricsAddr, "dockwatch_events_total", `verdict="block"`, `kind="exec"`, `rule="blocked-subcommand"`); n < burst+1 {
		t.Errorf("dockwatch_events_total for blocks = %v, want >= %d", n, burst+1)
	}
	if n := metric(t, metricsAddr, "dockwatch_webhook_sent_total"); n != 2 {
		t.Errorf("dockwatch_webhook_sent_total = %v, want 2", n)
	}
	if n := metric(t, metricsAddr, "dockwatch_webhook_deduplicated_total"); n < burst-1 {
		t.Errorf("dockwatch_webhook_deduplicated_total = %v, want >= %d", n, burst-1)
	}
	if n := metric(t, metricsAddr, "dockwatch_exec_to_verdict_seconds_count"); n < burst+1 {
		t.Errorf("exec-to-verdict histogram count = %v", n)
	}
	if metric(t, metricsAddr, "dockwatch_enforcement_up") != 1 {
		t.Errorf("dockwatch_enforcement_up is not 1")
	}

	// status over the same socket.
	st, err := e.dockwatch(t, nil, "status", "-o", "json", "--socket", e.socket())
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Mode       string   `json:"mode"`
		ModeReason string   `json:"mode_reason"`
		Attached   []string `json:"attached"`
		Supervised []struct {
			Name string `json:"name"`
		} `json:"supervised"`
		Clients []struct {
			Path string `json:"path"`
			Ino  uint64 `json:"ino"`
		} `json:"trusted_clients"`
	}
	if err := json.Unmarshal([]byte(st), &s); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, st)
	}
	if s.Mode == "" || s.ModeReason == "" || len(s.Attached) < 3 || len(s.Supervised) != 1 ||
		s.Supervised[0].Name != e.worker.Name || len(s.Clients) == 0 || s.Clients[0].Path != e.d.CLI || s.Clients[0].Ino == 0 {
		t.Errorf("status %s", st)
	}
	if txt, err := e.dockwatch(t, nil, "status", "--socket", e.socket()); err != nil || !strings.Contains(txt, "tracepoint") {
		t.Errorf("status (text): %v\n%s", err, txt)
	}
}

// attemptLoop runs blocked docker commands as the worker until stop is closed and reports
// how many there were and which were not killed.
type attemptLoop struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	attempts int
	survived []string
}

func (e *env) startAttempts(t *testing.T, argv ...[]string) *attemptLoop {
	l := &attemptLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			args := argv[i%len(argv)]
			res, err := e.worker.Run(30*time.Second, e.d.Env(), e.d.CLI, args...)
			l.mu.Lock()
			l.attempts++
			if err != nil || !res.Killed() {
				l.survived = append(l.survived, fmt.Sprintf("%v: %v %v", args, res, err))
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *attemptLoop) finish() (int, []string) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attempts, l.survived
}

// blockedCalls are the API calls none of the blocked attempts may make.
func blockedCalls(calls []string, paths ...string) []string {
	var hit []string
	for _, c := range calls {
		for _, p := range paths {
			if strings.Contains(c, p) {
				hit = append(hit, c)
			}
		}
	}
	return hit
}

func (e *env) testRestartReload(t *testing.T) {
	cfg := filepath.Join(e.dir, "rr.toml")
	e.writeConfig(t, cfg, daemonConfig{})
	pins := e.pinDir(t)
	d1 := e.start(t, cfg, pins)
	from := e.d.LogOffset()

	loop := e.startAttempts(t, []string{"exec", "ctr", "true"}, []string{"cp", "ctr:/etc/passwd", "-"})
	time.Sleep(500 * time.Millisecond)

	// Restart: SIGTERM, then start again while the attempts go on.
	stop(t, d1)
	time.Sleep(500 * time.Millisecond) // the daemon is down; the pinned programs are not
	d2 := e.start(t, cfg, pins)
	if !strings.Contains(e.lastDaemonMessage(t), "adopted the pinned programs") {
		t.Errorf("the restarted daemon did not adopt the pins: %q", e.lastDaemonMessage(t))
	}

	// Reload with a changed policy: "logs" is blocked from now on.
	if killed, res := e.docker(t, "logs", "ctr"); killed {
		t.Fatalf("docker logs killed before the reload: %v", res)
	}
	fromLogs := e.d.LogOffset()
	e.reload(t, d2, cfg, daemonConfig{block: []string{"exec", "cp", "commit", "diff", "export", "import", "load",
		"save", "attach", "push", "tag", "logs"}}, "reloaded", 1)
	if killed, res := e.docker(t, "logs", "ctr"); !killed {
		t.Errorf("docker logs not killed after the reload: %v", res)
	}

	// Reload with a changed load-time setting: new programs are attached next to the old
	// ones before those go.
	e.reload(t, d2, cfg, daemonConfig{block: []string{"exec", "cp", "commit", "diff", "export", "import", "load",
		"save", "attach", "push", "tag", "logs"}, invalidLine: `undecided = "allow"`}, "reloaded", 2)
	if !strings.Contains(d2.Stderr(), "programs replaced") {
		t.Errorf("changing policy.undecided did not replace the programs:\n%s", daemon.Tail(d2.Stderr(), 5))
	}

	// Reload with an invalid policy: rejected with key and line, the policy above stays.
	e.reload(t, d2, cfg, daemonConfig{block: []string{"exec", "logs"}, invalidLine: `escape = "sometimes"`}, "reload rejected", 1)
	rejected := d2.Stderr()
	if !strings.Contains(rejected, "policy.escape") || !strings.Contains(rejected, "rr.toml:") {
		t.Errorf("the rejection does not name the key and line:\n%s", daemon.Tail(rejected, 5))
	}
	if killed, res := e.docker(t, "logs", "ctr"); !killed {
		t.Errorf("docker logs not killed after the rejected reload: %v", res)
	}
	if killed, res := e.docker(t, "tag", dockerd.Image, "x:1"); !killed {
		t.Errorf("docker tag (old policy) not killed after the rejected reload: %v", res)
	}
	if killed, res := e.docker(t, "ps"); killed || res.ExitCode != 0 {
		t.Errorf("docker ps after the reloads: %v", res)
	}

	n, survived := loop.finish()
	if n < 5 || len(survived) > 0 {
		t.Errorf("%d attempts, these were not killed: %v", n, survived)
	}
	calls, err := e.d.APICalls(from)
	if err != nil {
		t.Fatal(err)
	}
	if hit := blockedCalls(calls, "/exec", "/archive", "/tag"); len(hit) > 0 {
		t.Errorf("blocked endpoints reached the API during restart and reloads: %v", hit)
	}
	logCalls, err := e.d.APICalls(fromLogs)
	if err != nil {
		t.Fatal(err)
	}
	if hit := blockedCalls(logCalls, "/logs"); len(hit) > 0 {
		t.Errorf("docker logs reached the API after the reload blocked it: %v", hit)
	}
	t.Logf("%d blocked attempts during a restart and two reloads, all killed", n)
}

// lastDaemonMessage is the message of the newest "enforcing" daemon event on the daemons'
// stdout (the history on the socket is short next to the attempt loop).
func (e *env) lastDaemonMessage(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.dir, "stdout.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	msg := ""
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ev events.Event
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Kind == events.KindDaemon && strings.HasPrefix(ev.Message, "enforcing") {
			msg = ev.Message
		}
	}
	return msg
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func (e *env) testFlood(t *testing.T) {
	// A webhook that refuses connections, and a dedup window short enough that most alerts
	// are new.
	dead := "http://" + freePort(t) + "/hook"
	metricsAddr := freePort(t)
	cfg := filepath.Join(e.dir, "flood.toml")
	e.writeConfig(t, cfg, daemonConfig{webhook: dead, dedup: "1ms", metrics: metricsAddr, history: 10000})
	d := e.start(t, cfg, e.pinDir(t))

	// A stream client that asks to follow and never reads.
	stuck, err := net.Dial("unix", e.socket())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if _, err := stuck.Write([]byte(`{"op":"events","follow":true}` + "\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stuck client to subscribe", 10*time.Second, func() bool {
		return metric(t, metricsAddr, "dockwatch_stream_clients") >= 1
	})
	rssBefore := rssKiB(t, d.Pid())

	const flood = 10000
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do %s exec ctr true 2>/dev/null; i=$((i+1)); done`, flood, e.d.CLI)
	start := time.Now()
	res, err := e.worker.Run(10*time.Minute, e.d.Env(), "/bin/sh", "-c", script)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("flood: %v %v", res, err)
	}
	t.Logf("%d blocked execs in %v", flood, time.Since(start).Round(time.Millisecond))

	// Enforcement: still kills, right away.
	if killed, res := e.docker(t, "exec", "ctr", "true"); !killed {
		t.Errorf("docker exec after the flood not killed: %v", res)
	}
	// dockwatch events still answers, quickly, with the newest events.
	t0 := time.Now()
	out, err := e.dockwatch(t, nil, "events", "-n", "3", "-o", "json", "--socket", e.socket())
	if err != nil || strings.Count(out, "\n") != 3 {
		t.Errorf("events -n 3 after the flood: %v\n%s", err, out)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("events -n 3 took %v after the flood", took)
	}
	waitFor(t, "the daemon to read the flood", 60*time.Second, func() bool {
		return metric(t, metricsAddr, "dockwatch_records_total")+metric(t, metricsAddr, "dockwatch_ringbuf_drops_total") >= flood
	})
	records := metric(t, metricsAddr, "dockwatch_records_total")
	ringDrops := metric(t, metricsAddr, "dockwatch_ringbuf_drops_total")
	streamDrops := metric(t, metricsAddr, "dockwatch_stream_dropped_total")
	hookDropped := metric(t, metricsAddr, "dockwatch_webhook_dropped_total")
	hookFailed := metric(t, metricsAddr, "dockwatch_webhook_failed_total")
	hookSent := metric(t, metricsAddr, "dockwatch_webhook_sent_total")
	t.Logf("records %v, ring buffer drops %v, stream drops %v, webhook dropped %v failed %v sent %v",
		records, ringDrops, streamDrops, hookDropped, hookFailed, hookSent)
	if streamDrops == 0 {
		t.Errorf("the stuck stream client lost no events: drops not counted")
	}
	if hookDropped == 0 {
		t.Errorf("the dead webhook's queue dropped nothing: drops not counted")
	}
	if hookSent != 0 {
		t.Errorf("a dead webhook counted %v sent alerts", hookSent)
	}
	rssAfter := rssKiB(t, d.Pid())
	t.Logf("daemon RSS %d KiB before, %d KiB after the flood", rssBefore, rssAfter)
	if rssAfter > rssBefore+64*1024 {
		t.Errorf("daemon RSS grew from %d KiB to %d KiB", rssBefore, rssAfter)
	}
}

func (e *env) testSocketGroup(t *testing.T) {
	cfg := filepath.Join(e.dir, "grp.toml")
	e.writeConfig(t, cfg, daemonConfig{})
	e.start(t, cfg, e.pinDir(t))
	st, err := os.Stat(e.socket())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 || st.Sys().(*syscall.Stat_t).Gid != uint32(e.evGroup.GID) || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("event socket mode %v, owner %d:%d; want 0660 root:%d", st.Mode(), st.Sys().(*syscall.Stat_t).Uid,
			st.Sys().(*syscall.Stat_t).Gid, e.evGroup.GID)
	}
	if _, err := e.dockwatch(t, e.reader, "events", "-n", "1", "--socket", e.socket()); err != nil {
		t.Errorf("a member of events.group cannot read the events: %v", err)
	}
	for _, u := range []*sysuser.User{e.outside, e.worker} {
		_, err := e.dockwatch(t, u, "events", "-n", "1", "--socket", e.socket())
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("user %s outside events.group: %v, want permission denied", u.Name, err)
		}
		if _, err := e.dockwatch(t, u, "status", "--socket", e.socket()); err == nil {
			t.Errorf("user %s outside events.group read the status", u.Name)
		}
	}
}

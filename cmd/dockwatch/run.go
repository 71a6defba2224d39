package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"

	"github.com/dockwatch/dockwatch/internal/config"
	"github.com/dockwatch/dockwatch/internal/events"
	"github.com/dockwatch/dockwatch/internal/loader"
	"github.com/dockwatch/dockwatch/internal/sandbox"
)

func init() {
	register("run", "load the BPF programs, enforce the policy and serve events", cmdRun)
}

const runUsage = `Usage: dockwatch run --config FILE [--ready-file PATH] [--pin-dir DIR] [--unload-on-exit]
                     [--no-self-seccomp]

Loads and attaches the enforcement programs and pins them under the pin dir. The mode comes
from [kernel] mode: lsm (tp_btf exec hook, lsm/unix_stream_connect gate,
lsm/ptrace_access_check) where the BPF LSM is active and its programs load, else tracepoint
(tp_btf exec hook, cgroup/connect_unix gate or the sys_enter_connect check where the kernel
refuses task storage in connect_unix programs, and with access = "group" the post-connect
check); auto tries lsm first. The log, the start event and 'dockwatch status' say which mode
runs and why. When pins from an earlier run exist they are adopted: the same programs keep running,
a different build or load-time setting is attached next to them before the old links go, so
enforcement never has a gap. On SIGTERM or SIGINT the daemon exits and leaves the pinned
programs enforcing (the kernel counts the events it could not deliver); 'dockwatch unload'
removes them, as does --unload-on-exit.

SIGHUP reloads the config: it is parsed, validated and compiled in full, then the classifier
tables switch atomically (generation swap) and the supervised users, trusted clients and
sockets are updated. A bad config is rejected with its key and line; the old policy stays.
The [events], [alerts], [metrics] and [kernel] sections take effect at the next start.

Events (schema v1) go to stdout as JSON lines, to the event socket (events.socket, mode 0660,
group events.group; see 'dockwatch events' and 'dockwatch status'), to journald with
DOCKWATCH_* fields when it runs (else block events are logged on stderr), to the webhook
(alerts.webhook_url; JSON with a Slack-compatible "text"; body signed with HMAC-SHA256 of the
secret in alerts.webhook_secret_file, header X-Dockwatch-Signature: sha256=HEX) and to the
Prometheus endpoint metrics.listen (/metrics).

Once everything is loaded, attached and listening, the daemon puts a seccomp allowlist on
itself (all threads, no_new_privs; 'dockwatch sandbox --profile daemon --print' lists it): what a
running daemon, a reload and the exit need stays allowed; exec, ptrace and kernel module or
kexec loading kill the daemon (the pinned programs keep enforcing); anything else (mount, kill,
setuid, listen, chmod, ...) fails with EPERM. --no-self-seccomp skips it, for debugging.

Under systemd (Type=notify) READY=1 is sent once every program is attached, WATCHDOG=1 while
the main loop runs, RELOADING=1 around a reload and STOPPING=1 at exit. The ready file is
written at the same moment as READY=1. Exit status: 0 after a signal, 1 if enforcement
failed, 2 for usage or config errors.

Options:
`

// runtimeDir holds what dockwatch mounts itself (a cgroup2 on hosts without one).
const runtimeDir = "/run/dockwatch"

type runFlags struct {
	configPath, readyFile, pinDir string
	unloadOnExit                  bool
	noSelfSeccomp                 bool
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dockwatch run", flag.ContinueOnError)
	var rf runFlags
	fs.StringVar(&rf.configPath, "config", "", "config `FILE` (required)")
	fs.StringVar(&rf.readyFile, "ready-file", "", "write `PATH` once enforcement is on")
	fs.StringVar(&rf.pinDir, "pin-dir", loader.DefaultPinDir, "pin links and maps under `DIR` (on bpffs)")
	fs.BoolVar(&rf.unloadOnExit, "unload-on-exit", false, "remove the pins and detach at exit (tests)")
	fs.BoolVar(&rf.noSelfSeccomp, "no-self-seccomp", false, "do not put the daemon's seccomp allowlist on itself (debugging)")
	if code, done := parseFlags(fs, args, runUsage, stdout, stderr); done {
		return code
	}
	if rf.configPath == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dockwatch run: --config is required and no arguments are taken\n\n")
		printUsage(fs, runUsage, stderr)
		return exitUsage
	}
	if rf.pinDir == "" {
		fmt.Fprintf(stderr, "dockwatch run: --pin-dir must not be empty\n")
		return exitUsage
	}
	cfg, err := config.Load(rf.configPath)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		return exitUsage
	}
	opts, err := loaderOptions(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		return exitUsage
	}
	opts.PinDir = rf.pinDir
	d, err := newDaemon(rf, cfg, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		return exitUsage
	}
	return d.run(ctx, opts)
}

// loaderOptions maps the config to what the kernel side needs.
func loaderOptions(cfg *config.Config) (loader.Options, error) {
	tables, err := cfg.Compile()
	if err != nil {
		return loader.Options{}, err
	}
	uids, err := resolveUsers(cfg.Supervise.Users)
	if err != nil {
		return loader.Options{}, err
	}
	return loader.Options{
		UIDs:           uids,
		FollowChildren: cfg.Supervise.FollowChildren,
		UndecidedAllow: cfg.Policy.Undecided == "allow",
		Audit:          cfg.Policy.Mode == "audit",
		Access:         cfg.Docker.Access,
		Clients:        cfg.Docker.Clients,
		PluginDirs:     cfg.Docker.PluginDirs,
		Plugins:        cfg.Policy.Plugins,
		Sockets:        cfg.Docker.Sockets,
		Helpers:        cfg.Docker.Helpers,
		Mode:           cfg.Kernel.Mode,
		Tables:         tables,
		RuntimeDir:     runtimeDir,
	}, nil
}

// resolveUsers turns names or numeric UIDs into UIDs.
func resolveUsers(users []string) ([]uint32, error) {
	var uids []uint32
	for _, u := range users {
		if n, err := strconv.ParseUint(u, 10, 32); err == nil {
			uids = append(uids, uint32(n))
			continue
		}
		pw, err := user.Lookup(u)
		if err != nil {
			return nil, fmt.Errorf("supervise.users: %q: %w", u, err)
		}
		n, err := strconv.ParseUint(pw.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("supervise.users: %q: uid %q: %w", u, pw.Uid, err)
		}
		uids = append(uids, uint32(n))
	}
	return uids, nil
}

// lockedWriter lets several goroutines share one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// daemonState is what changes at a reload.
type daemonState struct {
	cfg  *config.Config
	opts loader.Options
	e    *loader.Enforcer
}

type runDaemon struct {
	flags   runFlags
	stderr  io.Writer
	log     *slog.Logger
	stdout  *json.Encoder
	journal bool

	hub     *events.Hub
	alerter *events.Alerter
	metrics *events.Metrics
	proc    *events.Processor
	started time.Time

	evLn      *net.UnixListener
	metricsLn net.Listener

	mu             sync.Mutex // guards st and lastReload
	st             daemonState
	lastReload     string
	reloads        atomic.Uint64
	reloadFailures atomic.Uint64
	up             atomic.Bool
	selfSeccomp    atomic.Value // string: on, off or unsupported (applySelfSeccomp)
}

// newDaemon opens what the config asks for before anything is loaded, so a bad socket, group,
// secret or listen address stops the start before enforcement changes.
func newDaemon(rf runFlags, cfg *config.Config, stdout, stderr io.Writer) (*runDaemon, error) {
	stderr = &lockedWriter{w: stderr}
	enc := json.NewEncoder(&lockedWriter{w: stdout})
	enc.SetEscapeHTML(false)
	d := &runDaemon{
		flags:   rf,
		stderr:  stderr,
		log:     slog.New(slog.NewTextHandler(stderr, nil)),
		stdout:  enc,
		journal: journal.Enabled(),
		hub:     events.NewHub(cfg.Events.History),
		started: time.Now(),
	}
	d.st.cfg = cfg
	if cfg.Alerts.WebhookURL != "" {
		d.alerter = &events.Alerter{URL: cfg.Alerts.WebhookURL, DedupWindow: time.Duration(cfg.Alerts.DedupWindow),
			Audit: cfg.Policy.Mode == "audit"}
		if f := cfg.Alerts.WebhookSecretFile; f != "" {
			secret, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("alerts.webhook_secret_file: %w", err)
			}
			if s := strings.TrimSpace(string(secret)); s == "" {
				return nil, fmt.Errorf("alerts.webhook_secret_file: %s is empty", f)
			} else {
				d.alerter.Secret = []byte(s)
			}
			if st, err := os.Stat(f); err == nil && st.Mode().Perm()&0o004 != 0 {
				d.log.Warn("webhook secret file is world-readable", "file", f)
			}
		}
	}
	if cfg.Events.Socket != "" {
		g, err := user.LookupGroup(cfg.Events.Group)
		if err != nil {
			return nil, fmt.Errorf("events.group: %w", err)
		}
		gid, err := strconv.Atoi(g.Gid)
		if err != nil {
			return nil, fmt.Errorf("events.group: gid %q: %w", g.Gid, err)
		}
		if d.evLn, err = events.Listen(cfg.Events.Socket, gid); err != nil {
			return nil, err
		}
	}
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			d.closeListeners()
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		d.metricsLn = ln
	}
	return d, nil
}

func (d *runDaemon) closeListeners() {
	if d.evLn != nil {
		d.evLn.Close()
		os.Remove(d.st.cfg.Events.Socket)
	}
	if d.metricsLn != nil {
		d.metricsLn.Close()
	}
}

func (d *runDaemon) state() daemonState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

func clientMap(e *loader.Enforcer) map[events.FileID]string {
	clients := map[events.FileID]string{}
	for _, c := range e.Clients {
		clients[events.FileID{Dev: c.Dev, Ino: c.Ino}] = c.Path
	}
	return clients
}

// counts is what the metrics and the status read.
func (d *runDaemon) counts() events.Counts {
	c := events.Counts{Processor: d.proc.Stats(), Stream: d.hub.Stats(), Reloads: d.reloads.Load(),
		ReloadFailures: d.reloadFailures.Load(), EnforcementUp: d.up.Load()}
	if d.alerter != nil {
		c.Webhook = d.alerter.Stats()
	}
	if kc, err := d.state().e.Counters(); err == nil {
		c.RingBufDrops, c.StorageFails = kc.RingBufDrops, kc.StorageFails
	}
	return c
}

// dispatch hands one event to every output. Only stdout may block (a pipe nobody reads), and
// that only delays this loop: the processor drops and counts events meanwhile, and the kernel
// has already decided.
func (d *runDaemon) dispatch(ev events.Event) {
	now := time.Now()
	if err := d.stdout.Encode(ev); err != nil {
		d.log.Debug("write event to stdout", "err", err)
	}
	d.hub.Publish(ev)
	d.metrics.Observe(ev, now)
	d.alerter.Offer(ev)
	if d.journal {
		if err := events.SendJournal(ev); err != nil {
			d.log.Warn("journald", "err", err)
		}
	} else if events.Severe(ev) {
		d.log.Warn(events.AlertText(ev), "kind", ev.Kind, "verdict", ev.Verdict, "rule", ev.Rule,
			"command", ev.Command, "user", ev.User, "pid", ev.Pid)
	}
}

// reader is a running Processor on the current enforcer's ring buffer.
type reader struct {
	rd   *loader.EventReader
	done chan struct{}
}

func (d *runDaemon) startReader(e *loader.Enforcer, out chan<- events.Event) (*reader, error) {
	rd, err := e.NewEventReader()
	if err != nil {
		return nil, err
	}
	r := &reader{rd: rd, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := d.proc.Run(rd, out); err != nil && !errors.Is(err, loader.ErrClosed) {
			d.log.Error("event reader", "err", err)
		}
	}()
	return r, nil
}

func (r *reader) stop() {
	r.rd.Close()
	<-r.done
}

func (d *runDaemon) run(ctx context.Context, opts loader.Options) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	unlock, err := loader.LockPinDir(opts.PinDir)
	if err != nil {
		d.closeListeners()
		fmt.Fprintf(d.stderr, "dockwatch run: %v (give each daemon its own --pin-dir)\n", err)
		return 1
	}
	defer unlock()
	e, err := loader.Load(opts)
	if err != nil {
		d.closeListeners()
		fmt.Fprintf(d.stderr, "dockwatch run: %v\n", err)
		return 1
	}
	d.st = daemonState{cfg: d.st.cfg, opts: opts, e: e}
	d.up.Store(true)
	defer func() {
		st := d.state()
		if d.flags.unloadOnExit {
			if err := st.e.Unpin(); err != nil {
				d.log.Error("unload", "err", err)
			}
			d.up.Store(false)
		}
		if err := st.e.Close(); err != nil {
			d.log.Error("close", "err", err)
		}
	}()
	for _, w := range e.Warnings {
		d.log.Warn(w)
	}
	d.log.Info("enforcement mode", "mode", e.Plan.Mode, "reason", e.Plan.ModeReason, "gate", e.Plan.Gate.String())
	d.proc = &events.Processor{Tables: opts.Tables, Clients: clientMap(e), Mode: e.Plan.Mode, UndecidedAllow: opts.UndecidedAllow}
	d.metrics = events.NewMetrics(d.counts)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if d.evLn != nil {
		srv := &events.Server{Hub: d.hub, Status: func() any { return d.status() },
			Log: func(msg string, args ...any) { d.log.Debug(msg, args...) }}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, d.evLn); err != nil {
				d.log.Error("event socket", "err", err)
			}
			os.Remove(d.state().cfg.Events.Socket)
		}()
	}
	if d.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", d.metrics.Handler())
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(d.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("metrics", "err", err)
			}
		}()
		context.AfterFunc(ctx, func() {
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			defer c()
			_ = hs.Shutdown(sctx)
		})
	}
	if d.alerter != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.alerter.Run(ctx) }()
	}

	// Bounded: the processor drops (and counts) events rather than wait for this loop.
	out := make(chan events.Event, 4096)
	rd, err := d.startReader(e, out)
	if err != nil {
		d.log.Error("event reader", "err", err)
		return 1
	}
	// Everything that needs more than the allowlist (mounts, listeners, the first load and
	// attach, chown of the event socket) is done now.
	selfSeccomp, err := d.applySelfSeccomp()
	if err != nil {
		fmt.Fprintf(d.stderr, "dockwatch run: %v (--no-self-seccomp runs without it)\n", err)
		rd.stop()
		return 1
	}
	pins := e.Pins()
	how := "loaded"
	switch {
	case pins.Adopted:
		how = "adopted the pinned programs"
	case len(pins.Replaced)+len(pins.Updated) > 0:
		how = fmt.Sprintf("replaced the pinned programs (new %v, updated in place %v)", pins.Replaced, pins.Updated)
	}
	d.selfSeccomp.Store(selfSeccomp)
	d.dispatch(d.proc.Daemon(fmt.Sprintf("enforcing (mode %s: %s; gate %s, post-connect check %v, bpf lsm active %v; %s, pins %s; self seccomp %s): %s",
		e.Plan.Mode, e.Plan.ModeReason, e.Plan.Gate, e.Plan.PostCheck, e.Features.LSM, how, pins.Dir, selfSeccomp,
		strings.Join(e.Attached(), ", "))))

	if d.flags.readyFile != "" {
		if err := os.WriteFile(d.flags.readyFile, []byte(strings.Join(e.Attached(), "\n")+"\n"), 0o644); err != nil {
			d.log.Error("ready file", "err", err)
			rd.stop()
			return 1
		}
		defer os.Remove(d.flags.readyFile)
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)
	var watchdog <-chan time.Time
	if iv, err := daemon.SdWatchdogEnabled(false); err == nil && iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		watchdog = t.C
	}

	for {
		select {
		case <-ctx.Done():
			daemon.SdNotify(false, daemon.SdNotifyStopping)
			rd.stop()
			for drained := false; !drained; {
				select {
				case ev := <-out:
					d.dispatch(ev)
				default:
					drained = true
				}
			}
			st := d.proc.Stats()
			c, _ := d.state().e.Counters()
			left := "the pinned programs keep enforcing; 'dockwatch unload' removes them"
			if d.flags.unloadOnExit {
				left = "unloading"
			}
			d.dispatch(d.proc.Daemon(fmt.Sprintf("stopping: %d records, %d malformed, %d events dropped, %d ring buffer drops, %d divergences; %s",
				st.Records, st.Malformed, st.Dropped, c.RingBufDrops, st.Divergences, left)))
			return exitOK
		case <-hup:
			if nrd := d.reload(rd, out); nrd != nil {
				rd = nrd
			}
		case <-watchdog:
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		case ev := <-out:
			d.dispatch(ev)
		}
	}
}

// applySelfSeccomp installs sandbox.DaemonProfile on every thread of the daemon unless
// --no-self-seccomp says otherwise, and returns what the startup event reports. An architecture
// without a syscall table only gets a warning: enforcement matters more than the hardening.
func (d *runDaemon) applySelfSeccomp() (string, error) {
	if d.flags.noSelfSeccomp {
		d.log.Warn("self seccomp filter off (--no-self-seccomp)")
		return "off", nil
	}
	err := sandbox.ApplyDaemon()
	if errors.Is(err, sandbox.ErrUnsupportedArch) {
		d.log.Warn("self seccomp filter not installed", "err", err)
		return "unsupported", nil
	}
	if err != nil {
		return "", fmt.Errorf("self seccomp filter: %w", err)
	}
	return "on", nil
}

// reload applies the config file again. It returns the new reader, or nil when the reload was
// rejected and everything stays as it was.
func (d *runDaemon) reload(rd *reader, out chan<- events.Event) *reader {
	daemon.SdNotify(false, daemon.SdNotifyReloading)
	defer daemon.SdNotify(false, daemon.SdNotifyReady)
	old := d.state()
	reject := func(err error) *reader {
		d.reloadFailures.Add(1)
		msg := fmt.Sprintf("reload rejected, the old policy stays in force: %v", err)
		d.log.Error(msg)
		d.setLastReload(msg)
		d.dispatch(d.proc.Daemon(msg))
		return nil
	}
	cfg, err := config.Load(d.flags.configPath)
	if err != nil {
		return reject(err)
	}
	opts, err := loaderOptions(cfg)
	if err != nil {
		return reject(err)
	}
	opts.PinDir = old.opts.PinDir
	// The mode is chosen once per start (restartOnly): the processor and the pins keep it.
	opts.Mode = old.opts.Mode
	ne, err := loader.Load(opts)
	if err != nil {
		return reject(err)
	}
	// Both enforcers hold the same pinned links and maps now. Switch the reader over: the
	// ring buffer keeps what arrives in between.
	rd.stop()
	d.proc.SetPolicy(opts.Tables, clientMap(ne), opts.UndecidedAllow)
	d.mu.Lock()
	d.st = daemonState{cfg: cfg, opts: opts, e: ne}
	d.mu.Unlock()
	if err := old.e.Close(); err != nil {
		d.log.Warn("close the previous enforcer", "err", err)
	}
	nrd, err := d.startReader(ne, out)
	if err != nil {
		d.log.Error("event reader after reload", "err", err)
	}
	for _, w := range ne.Warnings {
		d.log.Warn(w)
	}
	if restart := restartOnly(old.cfg, cfg); len(restart) > 0 {
		d.log.Warn("changed settings take effect at the next start", "keys", strings.Join(restart, ", "))
	}
	pins := ne.Pins()
	msg := fmt.Sprintf("reloaded %s: tables switched; programs %s", d.flags.configPath, map[bool]string{
		true: "kept", false: fmt.Sprintf("replaced %v, updated in place %v", pins.Replaced, pins.Updated)}[pins.Adopted])
	d.reloads.Add(1)
	d.setLastReload(msg)
	d.log.Info(msg)
	d.dispatch(d.proc.Daemon(msg))
	return nrd
}

func (d *runDaemon) setLastReload(msg string) {
	d.mu.Lock()
	d.lastReload = time.Now().UTC().Format(time.RFC3339) + " " + msg
	d.mu.Unlock()
}

// restartOnly lists the changed keys that a reload does not apply.
func restartOnly(a, b *config.Config) []string {
	var keys []string
	if a.Events != b.Events {
		keys = append(keys, "events")
	}
	if a.Alerts != b.Alerts {
		keys = append(keys, "alerts")
	}
	if a.Metrics != b.Metrics {
		keys = append(keys, "metrics")
	}
	if a.Kernel != b.Kernel {
		keys = append(keys, "kernel")
	}
	return keys
}

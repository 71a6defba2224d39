package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/dockwatch/dockwatch/internal/config"
	"github.com/dockwatch/dockwatch/internal/events"
	"github.com/dockwatch/dockwatch/internal/loader"
)

func init() {
	register("run", "load the BPF programs, enforce the policy and print events", cmdRun)
}

const runUsage = `Usage: dockwatch run --config FILE [--ready-file PATH]

Loads and attaches the enforcement programs (fallback mode: tp_btf exec hook, cgroup
connect_unix gate and, with access = "group", the post-connect check), then prints one schema v1
event per line as JSON on stdout until SIGINT or SIGTERM, and detaches everything on exit.

The ready file is written once every program is attached (under systemd, READY=1 is sent
then too). Exit status: 0 after a signal, 1 if enforcement failed, 2 for usage or config errors.

Options:
`

// runtimeDir holds what dockwatch mounts itself (a cgroup2 on hosts without one).
const runtimeDir = "/run/dockwatch"

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dockwatch run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var configPath, readyFile string
	fs.StringVar(&configPath, "config", "", "config `FILE` (required)")
	fs.StringVar(&readyFile, "ready-file", "", "write `PATH` once enforcement is on")
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, runUsage)
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return exitOK
		}
		fmt.Fprintln(stderr)
		printUsage(stderr)
		return exitUsage
	}
	if configPath == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dockwatch run: --config is required and no arguments are taken\n\n")
		printUsage(stderr)
		return exitUsage
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		return exitUsage
	}
	opts, err := loaderOptions(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		return exitUsage
	}
	return enforce(ctx, cfg, opts, readyFile, stdout, stderr)
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

// lockedWriter lets the event reader goroutine and the main loop share stderr.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func enforce(ctx context.Context, cfg *config.Config, opts loader.Options, readyFile string, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr}
	e, err := loader.Load(opts)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		return 1
	}
	defer func() {
		if err := e.Close(); err != nil {
			fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		}
	}()
	for _, w := range e.Warnings {
		fmt.Fprintf(stderr, "dockwatch run: warning: %s\n", w)
	}
	if cfg.Docker.Access == "group" && !e.Features.LSM {
		fmt.Fprintf(stderr, "dockwatch run: warning: access = \"group\" without the BPF LSM: the connect gate is path based "+
			"and has races (io_uring, threads, user namespaces); set [docker] access = \"setgid\" to close them\n")
	}

	rd, err := e.NewEventReader()
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		return 1
	}
	clients := map[events.FileID]string{}
	for _, c := range e.Clients {
		clients[events.FileID{Dev: c.Dev, Ino: c.Ino}] = c.Path
	}
	proc := &events.Processor{
		Tables: opts.Tables, Clients: clients, Mode: "tracepoint", UndecidedAllow: opts.UndecidedAllow,
	}
	// Bounded: the reader drops (and counts) events rather than wait for a slow stdout.
	out := make(chan events.Event, 4096)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(out)
		if err := proc.Run(rd, out); err != nil && !errors.Is(err, loader.ErrClosed) {
			fmt.Fprintf(stderr, "dockwatch run: %v\n", err)
		}
	}()
	ch := (<-chan events.Event)(out)

	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	write := func(ev events.Event) {
		if err := enc.Encode(ev); err != nil {
			fmt.Fprintf(stderr, "dockwatch run: write event: %v\n", err)
		}
	}
	write(proc.Daemon(fmt.Sprintf("enforcing (mode tracepoint, gate %s, post-connect check %v, bpf lsm active %v): %s",
		e.Plan.Gate, e.Plan.PostCheck, e.Features.LSM, strings.Join(e.Attached(), ", "))))

	if readyFile != "" {
		if err := os.WriteFile(readyFile, []byte(strings.Join(e.Attached(), "\n")+"\n"), 0o644); err != nil {
			fmt.Fprintf(stderr, "dockwatch run: ready file: %v\n", err)
			rd.Close()
			wg.Wait()
			return 1
		}
		defer os.Remove(readyFile)
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)

	done := ctx.Done()
	for done != nil || ch != nil {
		select {
		case <-done:
			done = nil
			daemon.SdNotify(false, daemon.SdNotifyStopping)
			rd.Close() // Run returns and closes ch once the reader is drained
		case ev, ok := <-ch:
			if !ok {
				ch = nil
				if done != nil {
					fmt.Fprintf(stderr, "dockwatch run: event reader stopped\n")
					wg.Wait()
					return 1
				}
				continue
			}
			write(ev)
		}
	}
	wg.Wait()
	st := proc.Stats()
	c, _ := e.Counters()
	write(proc.Daemon(fmt.Sprintf("stopping: %d records, %d malformed, %d events dropped, %d ring buffer drops, %d divergences",
		st.Records, st.Malformed, st.Dropped, c.RingBufDrops, st.Divergences)))
	return exitOK
}

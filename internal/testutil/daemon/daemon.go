// Package daemon runs `dockwatch run` from a built binary for the tests and the bench: it starts
// the daemon with a config and a pin dir, waits for its ready file, reads the events it prints,
// stops it, and unloads its pins.
package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Event is the part of dockwatch's event schema v1 that the tests and the bench read.
type Event struct {
	V       int       `json:"v"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Verdict string    `json:"verdict"`
	Action  string    `json:"action"`
	Rule    string    `json:"rule"`
	Command string    `json:"command"`
	Reason  string    `json:"reason"`
	Argv    []string  `json:"argv"`
	PID     int       `json:"pid"`
	UID     *uint32   `json:"uid"` // nil in daemon events
	User    string    `json:"user"`
	Exe     string    `json:"exe"`
	Message string    `json:"message"`
}

// IsUID reports whether the event is about a process of uid.
func (e Event) IsUID(uid int) bool { return e.UID != nil && int(*e.UID) == uid }

// Options say how to run the daemon.
type Options struct {
	Bin       string   // the dockwatch binary
	Config    string   // --config
	ReadyFile string   // --ready-file; removed before the start
	PinDir    string   // --pin-dir; "" leaves the daemon's default
	Args      []string // more flags: --unload-on-exit, --no-self-seccomp, ...

	// Stdout, when set, gets the daemon's stdout as it is, and no events are read. Otherwise
	// each line is decoded: events are kept for Events, or, when OnEvent is set, passed to it
	// from the reading goroutine and not kept; other lines are kept for BadLines.
	Stdout  io.Writer
	OnEvent func(Event)

	ReadyTimeout time.Duration // default 60s
	StopTimeout  time.Duration // SIGKILL after this long without an exit; default 20s
}

// Daemon is one running `dockwatch run`.
type Daemon struct {
	Cmd       *exec.Cmd
	StartedIn time.Duration // from the start to the ready file

	opts   Options
	done   chan struct{}
	mu     sync.Mutex
	stderr bytes.Buffer
	events []Event
	bad    []string
	once   sync.Once
}

// Start starts the daemon and waits for its ready file. When the daemon exits or is not ready
// in time, Start stops it and says why, with the end of its stderr.
func Start(o Options) (*Daemon, error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 20 * time.Second
	}
	if o.Bin == "" || o.Config == "" || o.ReadyFile == "" {
		return nil, errors.New("start dockwatch: the binary, the config and the ready file are required")
	}
	os.Remove(o.ReadyFile)
	args := []string{"run", "--config", o.Config, "--ready-file", o.ReadyFile}
	if o.PinDir != "" {
		args = append(args, "--pin-dir", o.PinDir)
	}
	d := &Daemon{opts: o, done: make(chan struct{})}
	d.Cmd = exec.Command(o.Bin, append(args, o.Args...)...)
	d.Cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.stderr.Write(p)
	})
	// Should the parent die before its clean-up, the daemon goes too.
	d.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var stdout io.Reader
	if o.Stdout != nil {
		d.Cmd.Stdout = o.Stdout
	} else {
		pipe, err := d.Cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("start dockwatch: %w", err)
		}
		stdout = pipe
	}
	start := time.Now()
	if err := d.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dockwatch: %w", err)
	}
	go func() {
		if stdout != nil {
			d.read(stdout)
		}
		_ = d.Cmd.Wait()
		close(d.done)
	}()
	if err := WaitReady(o.ReadyFile, o.ReadyTimeout, d.done); err != nil {
		_ = d.Stop()
		return nil, fmt.Errorf("dockwatch run: %w (%v); its stderr ends:\n%s", err, d.Cmd.ProcessState, d.StderrTail(100))
	}
	d.StartedIn = time.Since(start)
	return d, nil
}

// WaitReady waits until the file at path exists. It gives up after timeout, or when exited is
// closed first (the daemon is gone).
func WaitReady(path string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *Daemon) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			d.mu.Lock()
			d.bad = append(d.bad, sc.Text())
			d.mu.Unlock()
			continue
		}
		if d.opts.OnEvent != nil {
			d.opts.OnEvent(ev)
			continue
		}
		d.mu.Lock()
		d.events = append(d.events, ev)
		d.mu.Unlock()
	}
	// Keep draining so that the daemon never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// Stop sends SIGTERM and waits for the exit, with SIGKILL after the stop timeout. The pins stay
// unless the daemon runs with --unload-on-exit. The first call returns an error when the daemon
// had to be killed or did not exit with status 0; later calls return nil.
func (d *Daemon) Stop() error {
	var err error
	d.once.Do(func() {
		select {
		case <-d.done:
		default:
			_ = d.Cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(d.opts.StopTimeout):
				_ = d.Cmd.Process.Kill()
				<-d.done
				err = fmt.Errorf("dockwatch ignored SIGTERM for %v; killed it", d.opts.StopTimeout)
				return
			}
		}
		if st := d.Cmd.ProcessState; !st.Success() {
			err = fmt.Errorf("dockwatch run exited with %v; its stderr ends:\n%s", st, d.StderrTail(30))
		}
	})
	return err
}

// Done is closed when the daemon has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.Cmd.Process.Pid }

// Events returns a copy of the events the daemon printed so far.
func (d *Daemon) Events() []Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Event(nil), d.events...)
}

// BadLines returns the stdout lines that were not events.
func (d *Daemon) BadLines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.bad...)
}

// Stderr returns what the daemon wrote to stderr so far.
func (d *Daemon) Stderr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// StderrTail returns the last n lines of the daemon's stderr.
func (d *Daemon) StderrTail(n int) string { return Tail(d.Stderr(), n) }

// Tail returns the last n lines of s, saying how many it left out.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return fmt.Sprintf("[%d lines omitted]\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "\n")
}

// Unload runs `bin unload --pin-dir dir`: the programs pinned there stop enforcing once no
// daemon holds them.
func Unload(bin, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "unload", "--pin-dir", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dockwatch unload --pin-dir %s: %w\n%s", dir, err, out)
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

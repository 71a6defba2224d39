package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	testdaemon "github.com/dockwatch/dockwatch/internal/testutil/daemon"
)

// daemon is one `dockwatch run` and what the bench counts of its events.
type daemon struct {
	*testdaemon.Daemon
	bin, cfg string

	mu       sync.Mutex
	execs    map[uint32]int64 // exec events per uid
	messages []string         // daemon events
}

// startDaemon runs `dockwatch run --config cfg --ready-file ...` and waits until it is ready.
func startDaemon(bin, cfg, dir string) (*daemon, error) {
	d := &daemon{bin: bin, cfg: cfg, execs: map[uint32]int64{}}
	o := testdaemon.Options{Bin: bin, Config: cfg, ReadyFile: filepath.Join(dir, "ready"), StopTimeout: 30 * time.Second,
		OnEvent: d.count}
	// A dockwatch that pins its programs gets a pin dir of its own, and removes the pins when
	// it exits: the next state must run without it.
	if help, _ := exec.Command(bin, "help", "run").CombinedOutput(); strings.Contains(string(help), "-pin-dir") {
		o.PinDir = pinDir(dir)
		if strings.Contains(string(help), "-unload-on-exit") {
			o.Args = append(o.Args, "--unload-on-exit")
		}
	}
	var err error
	if d.Daemon, err = testdaemon.Start(o); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *daemon) count(ev testdaemon.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case ev.Kind == "exec" && ev.UID != nil:
		d.execs[*ev.UID]++
	case ev.Kind == "daemon":
		d.messages = append(d.messages, ev.Message)
	}
}

// execEvents is the number of exec events seen for uid.
func (d *daemon) execEvents(uid uint32) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.execs[uid]
}

// stop sends SIGTERM (SIGKILL after 30 s) and, where dockwatch pins its programs and has an
// unload subcommand, unloads them, so that the next state really runs without dockwatch.
func (d *daemon) stop() error {
	err := d.Stop()
	if help, _ := exec.Command(d.bin, "help").CombinedOutput(); strings.Contains(string(help), "unload") {
		if out, uerr := exec.Command(d.bin, "unload", "--config", d.cfg, "--pin-dir", pinDir(filepath.Dir(d.cfg))).CombinedOutput(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("dockwatch unload: %w: %s", uerr, out))
		}
	}
	return err
}

// pinDir is the bpffs directory for the pins of the daemons of the fixture in dir.
func pinDir(dir string) string {
	return filepath.Join(testdaemon.BPFFS, filepath.Base(dir))
}

// stopCounts parses the daemon's closing message for its loss counters.
func (d *daemon) stopCounts() (dropped, ringDrops int64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.messages {
		if !strings.HasPrefix(m, "stopping:") {
			continue
		}
		var records, malformed, div int64
		if _, err := fmt.Sscanf(m, "stopping: %d records, %d malformed, %d events dropped, %d ring buffer drops, %d divergences",
			&records, &malformed, &dropped, &ringDrops, &div); err == nil {
			return dropped, ringDrops, true
		}
	}
	return 0, 0, false
}

// procUsage is a process's memory and CPU time.
type procUsage struct {
	rssKB, hwmKB int64
	cpu          time.Duration // user + system
	at           time.Time
}

func readUsage(pid int) (procUsage, error) {
	u := procUsage{at: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				u.rssKB = n
			} else {
				u.hwmKB = n
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(rest) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	ut, _ := strconv.ParseInt(rest[11], 10, 64)
	st, _ := strconv.ParseInt(rest[12], 10, 64)
	const clkTck = 100 // USER_HZ on every Linux architecture Go supports
	u.cpu = time.Duration(ut+st) * time.Second / clkTck
	return u, nil
}

// cpuPercent is the CPU time between two readings as a percentage of one CPU.
func cpuPercent(a, b procUsage) float64 {
	wall := b.at.Sub(a.at)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(b.cpu-a.cpu) / float64(wall)
}

// heldProgs are the ids of the BPF programs process pid holds a file descriptor of (a program
// or a link), from /proc/PID/fdinfo: bpftool here has no pid column.
func heldProgs(pid int) map[uint32]bool {
	ids := map[uint32]bool{}
	infos, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	for _, path := range infos {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && k == "prog_id" {
				if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
					ids[uint32(id)] = true
				}
			}
		}
	}
	return ids
}

// progOf finds the program called name that process pid holds.
func progOf(name string, pid int) (testdaemon.Prog, error) {
	progs, err := testdaemon.Progs()
	if err != nil {
		return testdaemon.Prog{}, err
	}
	held := heldProgs(pid)
	for _, p := range progs {
		if p.Name == name && held[p.ID] {
			return p, nil
		}
	}
	return testdaemon.Prog{}, fmt.Errorf("no program %s held by pid %d", name, pid)
}

// foreignProgs counts dockwatch exec hooks on the machine that pid (0: none) does not hold:
// other runs or tests, whose hooks every exec here pays for too.
func foreignProgs(pid int) int {
	progs, err := testdaemon.Progs()
	if err != nil {
		return -1
	}
	held := map[uint32]bool{}
	if pid > 0 {
		held = heldProgs(pid)
	}
	n := 0
	for _, p := range progs {
		if p.Name == "dw_exec" && !held[p.ID] {
			n++
		}
	}
	return n
}

// bpfStats turns on kernel.bpf_stats_enabled and returns a function that restores it.
func bpfStats() (restore func(), err error) {
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bpf stats: %w", err)
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return nil, fmt.Errorf("bpf stats: %w", err)
	}
	return func() { os.WriteFile(path, old, 0o644) }, nil
}

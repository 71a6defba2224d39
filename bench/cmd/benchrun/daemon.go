package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemon is one `dockwatch run`.
type daemon struct {
	cmd     *exec.Cmd
	done    chan struct{}
	started time.Duration // from start to the ready file

	mu       sync.Mutex
	execs    map[uint32]int64 // exec events per uid
	messages []string         // daemon events
	stderr   strings.Builder
}

type event struct {
	Kind    string  `json:"kind"`
	UID     *uint32 `json:"uid"`
	Message string  `json:"message"`
}

type lockedBuilder struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// startDaemon runs `dockwatch run --config cfg --ready-file ...` and waits until it is ready.
func startDaemon(bin, cfg, dir string) (*daemon, error) {
	ready := filepath.Join(dir, "ready")
	os.Remove(ready)
	d := &daemon{done: make(chan struct{}), execs: map[uint32]int64{}}
	args := []string{"run", "--config", cfg, "--ready-file", ready}
	// A dockwatch that pins its programs gets a pin dir of its own, and removes the pins when
	// it exits: the next state must run without it.
	if help, _ := exec.Command(bin, "help", "run").CombinedOutput(); strings.Contains(string(help), "-pin-dir") {
		args = append(args, "--pin-dir", pinDir(dir))
		if strings.Contains(string(help), "-unload-on-exit") {
			args = append(args, "--unload-on-exit")
		}
	}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Stderr = lockedBuilder{&d.mu, &d.stderr}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dockwatch: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			var ev event
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			d.mu.Lock()
			switch {
			case ev.Kind == "exec" && ev.UID != nil:
				d.execs[*ev.UID]++
			case ev.Kind == "daemon":
				d.messages = append(d.messages, ev.Message)
			}
			d.mu.Unlock()
		}
		d.cmd.Wait()
		close(d.done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			d.started = time.Since(start)
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("dockwatch run exited before it was ready (%v): %s", d.cmd.ProcessState, d.stderrText())
		default:
		}
		if time.Now().After(deadline) {
			d.stop(bin, cfg)
			return nil, fmt.Errorf("dockwatch run not ready after 60s: %s", d.stderrText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) stderrText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.TrimSpace(d.stderr.String())
}

// execEvents is the number of exec events seen for uid.
func (d *daemon) execEvents(uid uint32) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.execs[uid]
}

// stop sends SIGTERM (SIGKILL after 30 s) and, where dockwatch pins its programs and has an
// unload subcommand, unloads them, so that the next state really runs without dockwatch.
func (d *daemon) stop(bin, cfg string) error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	var err error
	if help, _ := exec.Command(bin, "help").CombinedOutput(); strings.Contains(string(help), "unload") {
		if out, uerr := exec.Command(bin, "unload", "--config", cfg, "--pin-dir", pinDir(filepath.Dir(cfg))).CombinedOutput(); uerr != nil {
			err = fmt.Errorf("dockwatch unload: %w: %s", uerr, out)
		}
	}
	if st := d.cmd.ProcessState; st != nil && !st.Success() {
		err = errors.Join(err, fmt.Errorf("dockwatch run exited with %v: %s", st, d.stderrText()))
	}
	return err
}

// pinDir is the bpffs directory for the pins of the daemons of the fixture in dir.
func pinDir(dir string) string {
	return filepath.Join("/sys/fs/bpf", filepath.Base(dir))
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

// bpfProg is what bpftool reports of one program.
type bpfProg struct {
	ID        uint32 `json:"id"`
	Name      string `json:"name"`
	RunTimeNs uint64 `json:"run_time_ns"`
	RunCnt    uint64 `json:"run_cnt"`
}

func listProgs() ([]bpfProg, error) {
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var progs []bpfProg
	if err := json.Unmarshal(out, &progs); err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	return progs, nil
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
func progOf(name string, pid int) (bpfProg, error) {
	progs, err := listProgs()
	if err != nil {
		return bpfProg{}, err
	}
	held := heldProgs(pid)
	for _, p := range progs {
		if p.Name == name && held[p.ID] {
			return p, nil
		}
	}
	return bpfProg{}, fmt.Errorf("no program %s held by pid %d", name, pid)
}

// foreignProgs counts dockwatch exec hooks on the machine that pid (0: none) does not hold:
// other runs or tests, whose hooks every exec here pays for too.
func foreignProgs(pid int) int {
	progs, err := listProgs()
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

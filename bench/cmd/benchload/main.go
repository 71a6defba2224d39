// Command benchload is the workload that `make bench` runs as the benchmark users. It takes its
// settings from the environment, not from argv, so that it can also run as a trusted docker
// client whose argv must classify as an allowed docker command (argv ["docker", "version"]).
//
//	BENCH_MODE=exec     BENCH_N times fork+exec BENCH_PATH with argv BENCH_ARGV (a JSON array)
//	                    and wait for it
//	BENCH_MODE=storm    BENCH_WORKERS loops of the same for BENCH_SECONDS
//	BENCH_MODE=connect  BENCH_N times socket(AF_UNIX)+connect(BENCH_SOCK)+close
//	BENCH_MODE=getppid  BENCH_N getppid system calls
//
// It prints one JSON object: {"ops":N,"ns":elapsed,"cpu_ns":C,"failed":F,"killed":K}, where C is
// the CPU time (user and system) of benchload and its waited-for children: on a loaded machine
// it moves much less than the wall-clock time.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Result is what benchload prints.
type Result struct {
	Ops    int64  `json:"ops"`
	Ns     int64  `json:"ns"`
	CPUNs  int64  `json:"cpu_ns"`
	Failed int64  `json:"failed"` // operations that returned an error (or a child that exited non-zero)
	Killed int64  `json:"killed"` // children that died of a signal
	Err    string `json:"error,omitempty"`
}

func main() {
	cpu0 := cpuTime()
	res, err := run()
	res.CPUNs = cpuTime() - cpu0
	if err != nil {
		res.Err = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(2)
	}
	if res.Err != "" {
		fmt.Fprintln(os.Stderr, "benchload:", res.Err)
		os.Exit(1)
	}
}

func envInt(name string, def int) (int, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: not a positive integer", name, s)
	}
	return n, nil
}

func run() (Result, error) {
	n, err := envInt("BENCH_N", 1000)
	if err != nil {
		return Result{}, err
	}
	switch mode := os.Getenv("BENCH_MODE"); mode {
	case "exec", "storm":
		path := os.Getenv("BENCH_PATH")
		if path == "" {
			return Result{}, errors.New("BENCH_PATH is not set")
		}
		argv := []string{path}
		if s := os.Getenv("BENCH_ARGV"); s != "" {
			if err := json.Unmarshal([]byte(s), &argv); err != nil || len(argv) == 0 {
				return Result{}, fmt.Errorf("BENCH_ARGV: not a non-empty JSON array of strings: %v", err)
			}
		}
		if mode == "exec" {
			return execLoop(path, argv, n, 1, 0)
		}
		secs, err := envInt("BENCH_SECONDS", 3)
		if err != nil {
			return Result{}, err
		}
		workers, err := envInt("BENCH_WORKERS", 2*runtime.NumCPU())
		if err != nil {
			return Result{}, err
		}
		return execLoop(path, argv, 0, workers, time.Duration(secs)*time.Second)
	case "connect":
		sock := os.Getenv("BENCH_SOCK")
		if sock == "" {
			return Result{}, errors.New("BENCH_SOCK is not set")
		}
		return connectLoop(sock, n)
	case "getppid":
		start := time.Now()
		for range n {
			syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		}
		return Result{Ops: int64(n), Ns: time.Since(start).Nanoseconds()}, nil
	default:
		return Result{}, fmt.Errorf("BENCH_MODE=%q: want exec, storm, connect or getppid", mode)
	}
}

// execLoop runs path n times (workers == 1), or in workers parallel loops until d has passed.
// syscall.ForkExec uses clone(CLONE_VFORK|CLONE_VM), so the parent's size does not matter.
func execLoop(path string, argv []string, n, workers int, d time.Duration) (Result, error) {
	devnull, err := syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, fmt.Errorf("open /dev/null: %w", err)
	}
	defer syscall.Close(devnull)
	attr := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{uintptr(devnull), uintptr(devnull), uintptr(devnull)}}
	var ops, failed, killed atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	deadline := start.Add(d)
	one := func() bool {
		pid, err := syscall.ForkExec(path, argv, attr)
		if err != nil {
			failed.Add(1)
			once.Do(func() { firstErr = fmt.Errorf("exec %s: %w", path, err) })
			return false
		}
		var ws syscall.WaitStatus
		for {
			_, err = syscall.Wait4(pid, &ws, 0, nil)
			if !errors.Is(err, syscall.EINTR) {
				break
			}
		}
		ops.Add(1)
		switch {
		case err != nil:
			failed.Add(1)
		case ws.Signaled():
			killed.Add(1)
		case ws.ExitStatus() != 0:
			failed.Add(1)
		}
		return true
	}
	if d == 0 {
		for range n {
			if !one() {
				break
			}
		}
	} else {
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) && one() {
				}
			}()
		}
		wg.Wait()
	}
	return Result{Ops: ops.Load(), Ns: time.Since(start).Nanoseconds(), Failed: failed.Load(), Killed: killed.Load()}, firstErr
}

func connectLoop(path string, n int) (Result, error) {
	addr := &syscall.SockaddrUnix{Name: path}
	var failed int64
	var firstErr error
	start := time.Now()
	for range n {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return Result{}, fmt.Errorf("socket: %w", err)
		}
		if err := syscall.Connect(fd, addr); err != nil {
			failed++
			if firstErr == nil {
				firstErr = fmt.Errorf("connect %s: %w", path, err)
			}
		}
		syscall.Close(fd)
	}
	return Result{Ops: int64(n), Ns: time.Since(start).Nanoseconds(), Failed: failed}, firstErr
}

// cpuTime is the user and system time of this process and its waited-for children, in ns.
func cpuTime() int64 {
	var total int64
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += ru.Utime.Nano() + ru.Stime.Nano()
		}
	}
	return total
}

package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// machine describes where the figures come from.
type machine struct {
	kernel, cpu, memory, lockdown, goVersion, docker, perf, commit, dockwatch string
	cpus                                                                      int
	loadBefore, loadAfter                                                     string
	date                                                                      time.Time
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

func probeMachine(dockerPath, dockwatch string) machine {
	m := machine{cpus: runtime.NumCPU(), date: time.Now().UTC(), loadBefore: loadavg(), goVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = firstLine(b)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.memory = strings.Join(strings.Fields(firstLine(b))[1:], " ")
	}
	const lockdown = "/sys/kernel/security/lockdown"
	if _, err := os.Stat(lockdown); err != nil {
		// securityfs is not always mounted; dockwatch mounts it too when it needs it.
		exec.Command("mount", "-t", "securityfs", "securityfs", "/sys/kernel/security").Run()
	}
	if b, err := os.ReadFile(lockdown); err == nil {
		m.lockdown = firstLine(b)
	} else {
		m.lockdown = "unknown (securityfs not mounted)"
	}
	if out, err := exec.Command(dockerPath, "--version").Output(); err == nil {
		m.docker = firstLine(out)
	}
	// perf stat where the PMU is there; a VM often has none.
	if out, err := exec.Command("perf", "stat", "-x,", "-e", "instructions", "true").CombinedOutput(); err != nil {
		m.perf = "perf stat not usable: " + firstLine(out)
	} else if strings.Contains(string(out), "not supported") || strings.Contains(string(out), "not counted") {
		m.perf = "`perf stat -e instructions true`: <not supported> (no hardware counters), so there are no instruction counts: the figures are wall-clock and CPU times"
	} else {
		m.perf = "`perf stat -e instructions` is supported"
	}
	if out, err := exec.Command(dockwatch, "version").Output(); err == nil {
		m.dockwatch = firstLine(out)
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.commit = firstLine(out)
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	testdaemon "github.com/dockwatch/dockwatch/internal/testutil/daemon"
	"github.com/dockwatch/dockwatch/internal/testutil/fakeapi"
	"github.com/dockwatch/dockwatch/internal/testutil/fsutil"
)

// account is a throwaway user the workloads run as.
type account struct {
	name     string
	uid, gid uint32
	groups   []uint32 // supplementary groups
	home     string
}

// fixture is everything the benchmarks set up: users, sockets, binaries and configs. close
// removes all of it.
type fixture struct {
	dir      string
	sockGrp  string
	sockGID  uint32
	free     account // not supervised
	member   account // supervised with group access: in the socket's group
	outsider account // supervised with setgid access: not in the socket's group

	benchload string // the workload program (not a trusted client)
	client    string // setgid copy of benchload, trusted: connects as an allowed client
	docker    string // setgid copy of the docker CLI, trusted
	busybox   string // setgid copy of busybox-static, trusted: the exec storm's target
	wrapper   string // the seed wrapper script, exec'ing docker
	plainSock string // a socket nobody protects
	protSock  string // a protected socket (the connect loop's target)
	fakeSock  string // the fake Engine API, protected
	configs   map[string]string

	listeners []net.Listener
	fake      *fakeapi.Server
	users     []string
	groups    []string
}

// setup builds the fixture in a new temporary directory. On error what was made is removed.
func setup(ctx context.Context, goCmd, modRoot, dockerPath, busyboxPath string, history int) (f *fixture, err error) {
	f = &fixture{configs: map[string]string{}}
	defer func() {
		if err != nil {
			f.close()
			f = nil
		}
	}()
	if f.dir, err = os.MkdirTemp("", "dockwatch-bench-"); err != nil {
		return f, fmt.Errorf("temp dir: %w", err)
	}
	// The benchmark users must reach the binaries and sockets in it.
	if err := os.Chmod(f.dir, 0o755); err != nil {
		return f, err
	}
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	f.sockGrp = "dwbench-sock" + suffix
	if err := runTool("groupadd", f.sockGrp); err != nil {
		return f, err
	}
	f.groups = append(f.groups, f.sockGrp)
	g, err := user.LookupGroup(f.sockGrp)
	if err != nil {
		return f, fmt.Errorf("look up group %s: %w", f.sockGrp, err)
	}
	gid, _ := strconv.ParseUint(g.Gid, 10, 32)
	f.sockGID = uint32(gid)
	for _, a := range []struct {
		acct   *account
		role   string
		member bool
	}{{&f.free, "free", false}, {&f.member, "memb", true}, {&f.outsider, "outs", false}} {
		if *a.acct, err = f.newAccount("dwbench-"+a.role+suffix, a.member); err != nil {
			return f, err
		}
	}

	bin := filepath.Join(f.dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return f, err
	}
	f.benchload = filepath.Join(f.dir, "benchload")
	build := exec.CommandContext(ctx, goCmd, "build", "-o", f.benchload, "./bench/cmd/benchload")
	build.Dir = modRoot
	if out, err := build.CombinedOutput(); err != nil {
		return f, fmt.Errorf("build benchload: %w\n%s", err, out)
	}
	// Trusted clients are setgid to the socket's group, as setgid access installs them; with
	// group access that changes nothing for a member.
	f.client = filepath.Join(bin, "benchload-client")
	f.docker = filepath.Join(bin, "docker")
	f.busybox = filepath.Join(bin, "busybox")
	for _, c := range [][2]string{{f.benchload, f.client}, {dockerPath, f.docker}, {busyboxPath, f.busybox}} {
		if err := f.installSetgid(c[0], c[1]); err != nil {
			return f, err
		}
	}
	script, err := os.ReadFile(filepath.Join(modRoot, "bench", "seed-wrapper.sh"))
	if err != nil {
		return f, fmt.Errorf("read the seed wrapper: %w", err)
	}
	if !strings.Contains(string(script), "exec @docker@ ") {
		return f, errors.New("bench/seed-wrapper.sh: no `exec @docker@` line to point at the docker CLI")
	}
	f.wrapper = filepath.Join(f.dir, "docker-wrapper")
	if err := os.WriteFile(f.wrapper, []byte(strings.ReplaceAll(string(script), "@docker@", f.docker)), 0o755); err != nil {
		return f, err
	}

	f.plainSock = filepath.Join(f.dir, "plain.sock")
	f.protSock = filepath.Join(f.dir, "protected.sock")
	f.fakeSock = filepath.Join(f.dir, "docker.sock")
	if err := f.listen(f.plainSock, 0o666); err != nil {
		return f, err
	}
	if err := f.listen(f.protSock, 0o660); err != nil {
		return f, err
	}
	if f.fake, err = fakeapi.Start(f.fakeSock); err != nil {
		return f, err
	}
	if err := f.sockPerms(f.fakeSock, 0o660); err != nil {
		return f, err
	}

	plugins := filepath.Join(f.dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		return f, err
	}
	for _, access := range []string{"group", "setgid"} {
		sup := f.supervised(access)
		cfg := testdaemon.Config{Users: []string{sup.name}, Sockets: []string{f.fakeSock, f.protSock},
			Clients: []string{f.docker, f.busybox, f.client}, PluginDirs: []string{plugins}, Access: access,
			EventsSocket: filepath.Join(f.dir, "events-"+access+".sock"), EventsGroup: "root", History: history}
		path := filepath.Join(f.dir, access+".toml")
		if err := cfg.Write(path); err != nil {
			return f, err
		}
		f.configs[access] = path
	}
	return f, nil
}

// supervised is the supervised account of a state: dockwatch off runs as the member.
func (f *fixture) supervised(state string) account {
	if state == "setgid" {
		return f.outsider
	}
	return f.member
}

func (f *fixture) newAccount(name string, member bool) (account, error) {
	args := []string{"-M", "-U", "-s", "/usr/sbin/nologin"}
	if member {
		args = append(args, "-G", f.sockGrp)
	}
	if err := runTool("useradd", append(args, name)...); err != nil {
		return account{}, err
	}
	f.users = append(f.users, name)
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	a := account{name: name, uid: uint32(uid), gid: uint32(gid), home: filepath.Join(f.dir, "home-"+name)}
	if member {
		a.groups = []uint32{f.sockGID}
	}
	if err := os.Mkdir(a.home, 0o700); err != nil {
		return a, err
	}
	return a, os.Chown(a.home, int(a.uid), int(a.gid))
}

func (f *fixture) installSetgid(src, dst string) error {
	return fsutil.InstallSetID(src, dst, int(f.sockGID), 0o755|os.ModeSetgid)
}

// listen serves a unix socket owned by root and the socket's group that accepts and closes.
func (f *fixture) listen(path string, mode os.FileMode) error {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	f.listeners = append(f.listeners, ln)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return f.sockPerms(path, mode)
}

func (f *fixture) sockPerms(path string, mode os.FileMode) error {
	if err := os.Chown(path, 0, int(f.sockGID)); err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	return nil
}

// close kills what the benchmark users left running and removes users, groups and files.
func (f *fixture) close() {
	for _, ln := range f.listeners {
		ln.Close()
	}
	if f.fake != nil {
		f.fake.Close()
	}
	for _, a := range []account{f.free, f.member, f.outsider} {
		if a.uid != 0 {
			killUID(a.uid)
		}
	}
	for _, u := range f.users {
		if err := runTool("userdel", u); err != nil {
			fmt.Fprintf(os.Stderr, "benchrun: %v\n", err)
		}
	}
	for _, g := range f.groups {
		// userdel -U groups go with their users; the socket group is ours to remove.
		if _, err := user.LookupGroup(g); err == nil {
			if err := runTool("groupdel", g); err != nil {
				fmt.Fprintf(os.Stderr, "benchrun: %v\n", err)
			}
		}
	}
	if f.dir != "" {
		// dockwatch unload leaves the pin dir's empty directories behind.
		if err := os.RemoveAll(pinDir(f.dir)); err != nil {
			fmt.Fprintf(os.Stderr, "benchrun: %v\n", err)
		}
		os.RemoveAll(f.dir)
	}
}

// killUID SIGKILLs every process whose real uid is uid.
func killUID(uid uint32) {
	procs, _ := filepath.Glob("/proc/[0-9]*/status")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if fields := strings.Fields(line); len(fields) > 1 && fields[0] == "Uid:" && fields[1] == strconv.FormatUint(uint64(uid), 10) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func runTool(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// loadResult is what benchload prints.
type loadResult struct {
	Ops    int64  `json:"ops"`
	Ns     int64  `json:"ns"`
	CPUNs  int64  `json:"cpu_ns"`
	Failed int64  `json:"failed"`
	Killed int64  `json:"killed"`
	Err    string `json:"error"`
}

func (r loadResult) nsPerOp() float64 { return float64(r.Ns) / float64(max(r.Ops, 1)) }

func (r loadResult) cpuNsPerOp() float64 { return float64(r.CPUNs) / float64(max(r.Ops, 1)) }

// workload runs benchload (or, with argv0 set, a trusted copy of it) as a with env.
type workload struct {
	as    account
	path  string   // benchload or the client copy
	argv  []string // nil: [path]
	env   []string // BENCH_* settings
	extra []string // more environment
}

func (f *fixture) run(ctx context.Context, w workload) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.path)
	if w.argv != nil {
		cmd.Args = w.argv
	}
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + w.as.home, "DOCKER_CONFIG=" + filepath.Join(w.as.home, ".docker")}, w.env...)
	cmd.Env = append(cmd.Env, w.extra...)
	cmd.Dir = w.as.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: w.as.uid, Gid: w.as.gid, Groups: w.as.groups}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var r loadResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return r, fmt.Errorf("benchload %v as %s: %v (%w): %s", w.env, w.as.name, jerr, err, strings.TrimSpace(stderr.String()))
	}
	if r.Err != "" || err != nil {
		return r, fmt.Errorf("benchload %v as %s: %s (%v)", w.env, w.as.name, r.Err, err)
	}
	return r, nil
}

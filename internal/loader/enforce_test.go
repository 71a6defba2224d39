package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// The test binary doubles as the supervised program: with DW_HELPER set it does one thing and
// exits before the testing package looks at argv, so it can run under any argv[0] ("docker").
//
//	DW_HELPER=connect:PATH          connect to PATH, print "ok" or the errno name
//	DW_HELPER=setuid:UID:PATH       setuid(UID), then connect
//	DW_HELPER=setuid-spawn:UID:PATH:SOCK  setuid(UID), then fork+exec PATH to connect to SOCK
//	DW_HELPER=exec:PATH:ARG0:ARG... exec PATH with the given argv and DW_HELPER=$DW_NEXT
func TestMain(m *testing.M) {
	if h := os.Getenv("DW_HELPER"); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

func helper(h string) int {
	verb, rest, _ := strings.Cut(h, ":")
	switch verb {
	case "connect":
		fmt.Println(tryConnect(rest))
		return 0
	case "setuid":
		uidStr, path, _ := strings.Cut(rest, ":")
		uid, _ := strconv.Atoi(uidStr)
		if err := unix.Setresuid(uid, uid, uid); err != nil {
			fmt.Println("setuid:", err)
			return 3
		}
		fmt.Println(tryConnect(path))
		return 0
	case "setuid-spawn":
		parts := strings.SplitN(rest, ":", 3)
		uid, _ := strconv.Atoi(parts[0])
		if err := unix.Setresuid(uid, uid, uid); err != nil {
			fmt.Println("setuid:", err)
			return 3
		}
		cmd := exec.Command(parts[1])
		cmd.Args = []string{"curl"}
		cmd.Env = []string{"DW_HELPER=connect:" + parts[2]}
		out, err := cmd.CombinedOutput()
		if err != nil {
			fmt.Println("child:", err)
		}
		fmt.Print(string(out))
		return 0
	case "exec":
		parts := strings.Split(rest, ":")
		err := unix.Exec(parts[0], parts[1:], []string{"DW_HELPER=" + os.Getenv("DW_NEXT")})
		fmt.Println("exec:", err)
		return 3
	}
	fmt.Println("unknown helper", h)
	return 3
}

func tryConnect(path string) string {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return "socket: " + err.Error()
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) {
			return unix.ErrnoName(errno)
		}
		return err.Error()
	}
	return "ok"
}

// helperCopy puts a copy of the test binary where the test uid can run it.
func (env *testEnv) helperCopy(t *testing.T, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(env.dir, name)
	copyFile(t, self, dst)
	return dst
}

type runResult struct {
	state *os.ProcessState
	out   string
}

func (r runResult) killed() bool { return killedBySIGKILL(r.state) }

func (r runResult) String() string {
	return fmt.Sprintf("%v, output %q", r.state, strings.TrimSpace(r.out))
}

// run starts path with argv and the helper verb, as uid (0 = root) with optional capabilities.
func run(t *testing.T, uid uint32, path string, argv []string, helperVerb string, caps ...uintptr) runResult {
	t.Helper()
	return runEnv(t, uid, path, argv, []string{"DW_HELPER=" + helperVerb}, caps...)
}

func runEnv(t *testing.T, uid uint32, path string, argv []string, env []string, caps ...uintptr) runResult {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Args = argv
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{AmbientCaps: caps}
	if uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("run %v: %v", argv, err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("run %v: timed out", argv)
	}
	return runResult{state: cmd.ProcessState, out: out.String()}
}

// eventCollector reads raw events in the background.
type eventCollector struct {
	rd *EventReader
	ch chan dockwatchEvent
}

func collectEvents(t *testing.T, e *Enforcer) *eventCollector {
	t.Helper()
	rd, err := e.NewEventReader()
	if err != nil {
		t.Fatal(err)
	}
	c := &eventCollector{rd: rd, ch: make(chan dockwatchEvent, 1024)}
	t.Cleanup(func() { rd.Close() })
	go func() {
		for {
			raw, err := rd.Read()
			if err != nil {
				close(c.ch)
				return
			}
			var ev dockwatchEvent
			if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, &ev); err != nil {
				continue
			}
			c.ch <- ev
		}
	}()
	return c
}

// wait returns the first event (within a few seconds) that match accepts.
func (c *eventCollector) wait(t *testing.T, what string, match func(*dockwatchEvent) bool) dockwatchEvent {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-c.ch:
			if !ok {
				t.Fatalf("event reader closed while waiting for %s", what)
			}
			if match(&ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event: %s", what)
		}
	}
}

func pathOf(ev *dockwatchEvent) string {
	b := make([]byte, 0, len(ev.Path))
	for _, c := range ev.Path[:min(int(ev.PathLen), len(ev.Path))] {
		b = append(b, byte(c))
	}
	return string(b)
}

func TestConnectGate(t *testing.T) {
	requireEnforcement(t)
	env := newTestEnv(t)
	untrusted := env.helperCopy(t, "curl")
	link := filepath.Join(env.dir, "l.sock")
	if err := os.Symlink(env.sock, link); err != nil {
		t.Fatal(err)
	}
	e := loadOrFail(t, env.options())
	events := collectEvents(t, e)

	t.Run("not supervised", func(t *testing.T) {
		r := run(t, 0, untrusted, []string{"curl"}, "connect:"+env.sock)
		if strings.TrimSpace(r.out) != "ok" || !r.state.Success() {
			t.Errorf("root connect: %v, want ok", r)
		}
		r = run(t, testUID+1, untrusted, []string{"curl"}, "connect:"+env.sock)
		if strings.TrimSpace(r.out) != "ok" {
			t.Errorf("other uid connect: %v, want ok", r)
		}
	})
	t.Run("not client denied", func(t *testing.T) {
		r := run(t, testUID, untrusted, []string{"curl"}, "connect:"+env.sock)
		if strings.TrimSpace(r.out) != "EPERM" {
			t.Fatalf("supervised untrusted connect: %v, want EPERM", r)
		}
		ev := events.wait(t, "connect denied", func(ev *dockwatchEvent) bool {
			return ev.Kind == 2 && ev.Uid == testUID && ev.Action == 2
		})
		if got := pathOf(&ev); got != env.sock {
			t.Errorf("event path %q, want %q", got, env.sock)
		}
		if ev.Verdict != 4 {
			t.Errorf("event verdict %d, want NOT_CLIENT (4)", ev.Verdict)
		}
	})
	t.Run("abstract and other sockets untouched", func(t *testing.T) {
		other := filepath.Join(env.dir, "o.sock")
		ln, err := net.Listen("unix", other)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		os.Chmod(other, 0o777)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Close()
			}
		}()
		r := run(t, testUID, untrusted, []string{"curl"}, "connect:"+other)
		if strings.TrimSpace(r.out) != "ok" {
			t.Errorf("supervised connect to an unprotected socket: %v, want ok", r)
		}
	})
	t.Run("symlink killed", func(t *testing.T) {
		r := run(t, testUID, untrusted, []string{"curl"}, "connect:"+link)
		if !r.killed() {
			t.Fatalf("connect through a symlink: %v, want SIGKILL", r)
		}
		ev := events.wait(t, "post-connect kill", func(ev *dockwatchEvent) bool {
			return ev.Kind == 2 && ev.Uid == testUID && ev.Action == 1
		})
		var st unix.Stat_t
		if err := unix.Stat(env.sock, &st); err != nil {
			t.Fatal(err)
		}
		if ev.SockIno != st.Ino || ev.SockDev != KernelDev(st.Dev) {
			t.Errorf("event socket %d:%d, want %d:%d", ev.SockDev, ev.SockIno, KernelDev(st.Dev), st.Ino)
		}
	})
	t.Run("proc root path killed", func(t *testing.T) {
		r := run(t, testUID, untrusted, []string{"curl"}, "connect:/proc/self/root"+env.sock)
		if !r.killed() {
			t.Fatalf("connect through /proc/self/root: %v, want SIGKILL", r)
		}
	})
	t.Run("mark survives setuid", func(t *testing.T) {
		// Starts as the supervised uid with CAP_SETUID, becomes an unsupervised uid.
		r := run(t, testUID, untrusted, []string{"curl"}, fmt.Sprintf("setuid:%d:%s", testUID+1, env.sock), unix.CAP_SETUID)
		if strings.TrimSpace(r.out) != "EPERM" {
			t.Fatalf("after setuid away from the supervised uid: %v, want EPERM", r)
		}
	})
}

func TestConnectGateAudit(t *testing.T) {
	requireEnforcement(t)
	env := newTestEnv(t)
	untrusted := env.helperCopy(t, "curl")
	opts := env.options()
	opts.Audit = true
	e := loadOrFail(t, opts)
	events := collectEvents(t, e)
	r := run(t, testUID, untrusted, []string{"curl"}, "connect:"+env.sock)
	if strings.TrimSpace(r.out) != "ok" {
		t.Fatalf("audit mode connect: %v, want ok", r)
	}
	ev := events.wait(t, "audit connect event", func(ev *dockwatchEvent) bool {
		return ev.Kind == 2 && ev.Uid == testUID
	})
	if ev.Action != 0 || ev.Flags&16 == 0 {
		t.Errorf("audit event action %d flags %#x, want none and EVENT_F_AUDIT", ev.Action, ev.Flags)
	}
}

func TestExecVerdict(t *testing.T) {
	requireEnforcement(t)
	env := newTestEnv(t)
	tables, err := policy.Compile(policy.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	opts := env.options()
	opts.Tables = tables
	// The trusted "docker": /bin/true copied (the brief's case) plus the test binary, which can
	// report what it was allowed to do.
	helperClient := env.helperCopy(t, "docker-helper")
	opts.Clients = append(opts.Clients, helperClient)
	copied := env.helperCopy(t, "docker-copy")
	e := loadOrFail(t, opts)
	events := collectEvents(t, e)

	t.Run("blocked command killed before it runs", func(t *testing.T) {
		r := run(t, testUID, env.client, []string{"docker", "exec", "c", "sh"}, "")
		if !r.killed() {
			t.Fatalf("docker exec: %v, want SIGKILL", r)
		}
		ev := events.wait(t, "exec block event", func(ev *dockwatchEvent) bool {
			return ev.Kind == 1 && ev.Uid == testUID && ev.Verdict == uint8(policy.VerdictBlock)
		})
		if ev.Action != 1 || ev.Res.Rule != uint8(policy.RuleBlockedSubcommand) || ev.Bin != uint8(policy.BinDocker) {
			t.Errorf("event %+v", ev)
		}
		// The helper binary would print before doing anything: nothing may come out.
		r = run(t, testUID, helperClient, []string{"docker", "exec", "c", "sh"}, "connect:"+env.sock)
		if !r.killed() || r.out != "" {
			t.Fatalf("helper as docker exec: %v, want SIGKILL and no output", r)
		}
	})
	t.Run("allowed command runs and may connect", func(t *testing.T) {
		r := run(t, testUID, env.client, []string{"docker", "ps"}, "")
		if !r.state.Success() {
			t.Fatalf("docker ps: %v, want success", r)
		}
		r = run(t, testUID, helperClient, []string{"docker", "ps"}, "connect:"+env.sock)
		if strings.TrimSpace(r.out) != "ok" {
			t.Fatalf("docker ps connect: %v, want ok", r)
		}
		ev := events.wait(t, "exec allow event", func(ev *dockwatchEvent) bool {
			return ev.Kind == 1 && ev.Uid == testUID && ev.Verdict == uint8(policy.VerdictAllow)
		})
		if ev.Action != 0 || ev.ArgvLen != uint32(len("docker\x00ps\x00")) {
			t.Errorf("event %+v", ev)
		}
	})
	t.Run("copied client is not trusted", func(t *testing.T) {
		r := run(t, testUID, copied, []string{"docker", "ps"}, "connect:"+env.sock)
		if strings.TrimSpace(r.out) != "EPERM" {
			t.Fatalf("copied docker ps connect: %v, want EPERM", r)
		}
	})
	t.Run("verdict is not inherited by a new exec", func(t *testing.T) {
		// An allowed client execs something else: the new image is NOT_CLIENT.
		r := runEnv(t, testUID, helperClient, []string{"docker", "ps"},
			[]string{"DW_HELPER=exec:" + copied + ":curl", "DW_NEXT=connect:" + env.sock})
		if strings.TrimSpace(r.out) != "EPERM" {
			t.Fatalf("after exec from an allowed client: %v, want EPERM", r)
		}
	})
	t.Run("unsupervised uid runs anything", func(t *testing.T) {
		r := run(t, testUID+1, env.client, []string{"docker", "exec", "c", "sh"}, "")
		if !r.state.Success() {
			t.Fatalf("unsupervised docker exec: %v, want success", r)
		}
	})
	t.Run("undecided killed", func(t *testing.T) {
		argv := []string{"docker", "ps"}
		for range policy.MaxTokens {
			argv = append(argv, "-a")
		}
		r := run(t, testUID, env.client, argv, "")
		if !r.killed() {
			t.Fatalf("docker with %d tokens: %v, want SIGKILL", len(argv), r)
		}
	})
	c, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.RingBufDrops != 0 || c.StorageFails != 0 {
		t.Errorf("counters %+v, want none", c)
	}
}

// TestEnterGate runs the older kernels' variant: the path check at sys_enter_connect kills.
func TestEnterGate(t *testing.T) {
	f := requireEnforcement(t)
	if !f.SyscallTracepoints {
		t.Skip("no syscall tracepoints")
	}
	env := newTestEnv(t)
	untrusted := env.helperCopy(t, "curl")
	opts := env.options()
	opts.ForceEnterGate = true
	e := loadOrFail(t, opts)
	if e.Plan.Gate != GateEnterConnect || slices.Contains(e.Plan.Programs, "dw_connect_unix") {
		t.Fatalf("plan %+v, want the sys_enter_connect gate", e.Plan)
	}
	events := collectEvents(t, e)
	r := run(t, testUID, untrusted, []string{"curl"}, "connect:"+env.sock)
	if !r.killed() || strings.Contains(r.out, "ok") {
		t.Fatalf("supervised untrusted connect: %v, want SIGKILL before it could use the socket", r)
	}
	ev := events.wait(t, "enter-check kill", func(ev *dockwatchEvent) bool {
		return ev.Kind == 2 && ev.Uid == testUID && ev.Action == 1
	})
	if ev.Flags&8 == 0 || pathOf(&ev) != env.sock {
		t.Errorf("event flags %#x path %q", ev.Flags, pathOf(&ev))
	}
	if r := run(t, 0, untrusted, []string{"curl"}, "connect:"+env.sock); strings.TrimSpace(r.out) != "ok" {
		t.Errorf("root connect: %v, want ok", r)
	}
}

// TestFollowChildren: the mark goes to children through fork even after the parent left the
// supervised uid, and only with follow_children.
func TestFollowChildren(t *testing.T) {
	requireEnforcement(t)
	for _, follow := range []bool{true, false} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) {
			env := newTestEnv(t)
			untrusted := env.helperCopy(t, "curl")
			opts := env.options()
			opts.FollowChildren = follow
			loadOrFail(t, opts)
			r := run(t, testUID, untrusted, []string{"curl"},
				fmt.Sprintf("setuid-spawn:%d:%s:%s", testUID+1, untrusted, env.sock), unix.CAP_SETUID)
			want := "ok"
			if follow {
				want = "EPERM"
			}
			if strings.TrimSpace(r.out) != want {
				t.Errorf("child of a once-supervised parent: %v, want %s", r, want)
			}
		})
	}
}

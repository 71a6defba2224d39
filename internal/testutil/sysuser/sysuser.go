// Package sysuser creates throwaway system users and groups for root-only tests and runs
// commands as them.
//
// Every name starts with "dwtest" followed by the creating process's pid, so a later run can
// tell the leftovers of a crashed run (pid gone) from the accounts of a test that is still
// running in parallel (pid alive), and delete only the former.
package sysuser

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Prefix starts the name of every account this package creates.
const Prefix = "dwtest"

// homePrefix starts the name of every home directory (in os.TempDir) this package creates.
const homePrefix = "dwhome"

// User is a throwaway system account with its own primary group and a home directory that
// only it (and root) can write.
type User struct {
	Name string
	UID  int
	GID  int
	Home string
}

// Group is a throwaway system group.
type Group struct {
	Name string
	GID  int
}

// SkipIfNotRoot skips t unless the test runs as root and the shadow tools are installed.
func SkipIfNotRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to create users (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel", "gpasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: %v", tool, err)
		}
	}
}

var staleOnce sync.Once

// NewGroup creates a throwaway group and deletes it when t ends.
func NewGroup(t testing.TB) *Group {
	t.Helper()
	SkipIfNotRoot(t)
	removeStaleOnce(t)
	name := uniqueName("g")
	if err := runTool("groupadd", "--system", name); err != nil {
		t.Fatalf("create group %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := runTool("groupdel", name); err != nil {
			t.Errorf("delete group %s: %v", name, err)
		}
	})
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatalf("look up new group %s: %v", name, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		t.Fatalf("group %s has a non-numeric gid %q", name, g.Gid)
	}
	return &Group{Name: name, GID: gid}
}

// NewUser creates a throwaway user (with a same-named primary group and a private home
// directory), adds it to groups, and deletes user, group, home and every process the user
// still runs when t ends.
func NewUser(t testing.TB, groups ...*Group) *User {
	t.Helper()
	SkipIfNotRoot(t)
	removeStaleOnce(t)
	name := uniqueName("u")
	// The home exists before the user so that the passwd entry names it: RemoveStale finds
	// the homes of crashed runs there.
	home, err := os.MkdirTemp("", homePrefix)
	if err != nil {
		t.Fatalf("create home for %s: %v", name, err)
	}
	args := []string{"--system", "--no-create-home", "--home-dir", home, "--user-group",
		"--shell", "/bin/sh", "--comment", "dockwatch test user"}
	if len(groups) > 0 {
		names := make([]string, len(groups))
		for i, g := range groups {
			names[i] = g.Name
		}
		args = append(args, "--groups", strings.Join(names, ","))
	}
	u := &User{Name: name, Home: home}
	if err := runTool("useradd", append(args, name)...); err != nil {
		os.RemoveAll(home)
		t.Fatalf("create user %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := u.remove(); err != nil {
			t.Errorf("%v", err)
		}
	})
	pw, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up new user %s: %v", name, err)
	}
	if u.UID, err = strconv.Atoi(pw.Uid); err != nil {
		t.Fatalf("user %s has a non-numeric uid %q", name, pw.Uid)
	}
	if u.GID, err = strconv.Atoi(pw.Gid); err != nil {
		t.Fatalf("user %s has a non-numeric gid %q", name, pw.Gid)
	}
	if err := os.Chown(home, u.UID, u.GID); err != nil {
		t.Fatalf("chown home of %s: %v", name, err)
	}
	return u
}

// AddToGroup makes u a member of g (effective for processes started afterwards).
func (u *User) AddToGroup(t testing.TB, g *Group) {
	t.Helper()
	if err := runTool("gpasswd", "--add", u.Name, g.Name); err != nil {
		t.Fatalf("add %s to %s: %v", u.Name, g.Name, err)
	}
}

// RemoveFromGroup removes u from g (effective for processes started afterwards).
func (u *User) RemoveFromGroup(t testing.TB, g *Group) {
	t.Helper()
	if err := runTool("gpasswd", "--delete", u.Name, g.Name); err != nil {
		t.Fatalf("remove %s from %s: %v", u.Name, g.Name, err)
	}
}

// Groups returns the supplementary group ids of u as the group database lists them now.
func (u *User) Groups() ([]uint32, error) {
	pw, err := user.LookupId(strconv.Itoa(u.UID))
	if err != nil {
		return nil, fmt.Errorf("look up user %d: %w", u.UID, err)
	}
	ids, err := pw.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("list groups of %s: %w", u.Name, err)
	}
	out := make([]uint32, 0, len(ids))
	for _, id := range ids {
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("group id %q of %s: %w", id, u.Name, err)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// Command returns a command that runs as u, with u's supplementary groups, HOME set to u's
// home and a minimal environment plus env ("KEY=value" entries, which win).
func (u *User) Command(ctx context.Context, env []string, name string, args ...string) (*exec.Cmd, error) {
	groups, err := u.Groups()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: groups},
		// A process group of its own, so a timeout can end everything the command started.
		Setpgid: true,
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = u.Home
	cmd.Env = append([]string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"LANG=C",
	}, env...)
	return cmd, nil
}

// Result is how a command ended.
type Result struct {
	ExitCode int            // exit status, or -1 when a signal ended it
	Signal   syscall.Signal // the signal that ended it, when Signaled
	Signaled bool
	TimedOut bool // the timeout expired and the command was killed by us
	Pid      int  // the process id it ran as
	Stdout   []byte
	Stderr   []byte
}

// Killed reports whether the command died by SIGKILL that the timeout did not send.
func (r Result) Killed() bool {
	return r.Signaled && r.Signal == syscall.SIGKILL && !r.TimedOut
}

// String summarises the result for test messages.
func (r Result) String() string {
	var how string
	switch {
	case r.TimedOut:
		how = "timed out"
	case r.Signaled:
		how = "signal " + r.Signal.String()
	default:
		how = "exit " + strconv.Itoa(r.ExitCode)
	}
	return fmt.Sprintf("%s; stdout %q; stderr %q", how, clip(r.Stdout), clip(r.Stderr))
}

func clip(b []byte) string {
	const max = 400
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// RunCmd runs cmd (from Command or any exec.Cmd with a context) and reports how it ended.
// It returns an error only when cmd could not be started.
func RunCmd(ctx context.Context, cmd *exec.Cmd) (Result, error) {
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: -1}
	if cmd.ProcessState == nil {
		return res, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		res.Signaled, res.Signal = true, ws.Signal()
	case ws.Exited():
		res.ExitCode = ws.ExitStatus()
	}
	res.TimedOut = ctx.Err() != nil
	res.Pid = cmd.ProcessState.Pid()
	return res, nil
}

// Run runs name with args as u (see Command) with a timeout and reports how it ended.
func (u *User) Run(timeout time.Duration, env []string, name string, args ...string) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd, err := u.Command(ctx, env, name, args...)
	if err != nil {
		return Result{}, err
	}
	return RunCmd(ctx, cmd)
}

func (u *User) remove() error {
	var errs []error
	if u.UID != 0 {
		if err := killUID(u.UID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := runTool("userdel", u.Name); err != nil {
		errs = append(errs, fmt.Errorf("delete user %s: %w", u.Name, err))
	}
	if u.Home != "" {
		if err := os.RemoveAll(u.Home); err != nil {
			errs = append(errs, fmt.Errorf("remove home of %s: %w", u.Name, err))
		}
	}
	return errors.Join(errs...)
}

// killUID SIGKILLs every process whose real or effective uid is uid and waits briefly for
// them to go, so userdel does not refuse with "user is currently used by process".
func killUID(uid int) error {
	if uid == 0 {
		return errors.New("refusing to kill the processes of uid 0")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := pidsOfUID(uid)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of uid %d survive SIGKILL", pids, uid)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pidsOfUID(uid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue // gone already
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "Uid:") {
				continue
			}
			// Uid: real effective saved fs
			fields := strings.Fields(line)
			if len(fields) >= 3 && (fields[1] == strconv.Itoa(uid) || fields[2] == strconv.Itoa(uid)) {
				// A zombie only needs its parent to reap it; killing it does nothing.
				if !isZombie(pid) {
					pids = append(pids, pid)
				}
			}
			break
		}
		f.Close()
	}
	return pids, nil
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// uniqueName returns Prefix + our pid + kind letter + random hex, e.g. dwtest4242u1a2b3c.
func uniqueName(kind string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("read random bytes: %v", err))
	}
	return fmt.Sprintf("%s%d%s%s", Prefix, os.Getpid(), kind, hex.EncodeToString(b[:]))
}

// ownerPid returns the pid encoded in a name made by uniqueName.
func ownerPid(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	if end == 0 || end == len(rest) {
		return 0, false
	}
	pid, err := strconv.Atoi(rest[:end])
	return pid, err == nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func removeStaleOnce(t testing.TB) {
	staleOnce.Do(func() {
		if err := RemoveStale(); err != nil {
			t.Logf("removing stale test accounts: %v", err)
		}
	})
}

// RemoveStale deletes the users and groups that a test process which no longer runs left
// behind (it crashed, or was killed before its cleanups ran).
func RemoveStale() error {
	var errs []error
	users, err := namesIn("/etc/passwd")
	if err != nil {
		return err
	}
	for _, name := range users {
		pid, ok := ownerPid(name)
		if !ok || pid == os.Getpid() || alive(pid) {
			continue
		}
		home := ""
		if pw, err := user.Lookup(name); err == nil {
			home = pw.HomeDir
			if uid, err := strconv.Atoi(pw.Uid); err == nil && uid != 0 {
				if err := killUID(uid); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := runTool("userdel", name); err != nil {
			errs = append(errs, fmt.Errorf("delete stale user %s: %w", name, err))
		}
		if filepath.Dir(home) == filepath.Clean(os.TempDir()) && strings.HasPrefix(filepath.Base(home), homePrefix) {
			if err := os.RemoveAll(home); err != nil {
				errs = append(errs, fmt.Errorf("remove stale home %s: %w", home, err))
			}
		}
	}
	groups, err := namesIn("/etc/group")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, name := range groups {
		pid, ok := ownerPid(name)
		if !ok || pid == os.Getpid() || alive(pid) {
			continue
		}
		if err := runTool("groupdel", name); err != nil {
			errs = append(errs, fmt.Errorf("delete stale group %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func namesIn(db string) ([]string, error) {
	b, err := os.ReadFile(db)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", db, err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		name, _, ok := strings.Cut(line, ":")
		if ok && strings.HasPrefix(name, Prefix) {
			names = append(names, name)
		}
	}
	return names, nil
}

// runTool runs one of the shadow tools, retrying while another process holds the lock on
// /etc/passwd or /etc/group (other tests may create accounts at the same time).
func runTool(name string, args ...string) error {
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		lastErr = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
		// useradd exits 10 for "cannot lock"; groupadd/userdel use other codes for the same.
		if !bytes.Contains(out, []byte("lock")) {
			return lastErr
		}
		time.Sleep(200 * time.Millisecond)
	}
	return lastErr
}

package sandbox_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/sandbox"
)

// childEnv makes the test binary act as a child that applies a profile and reports; see TestMain.
const childEnv = "DOCKWATCH_SANDBOX_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// child runs in a re-executed test binary. It prints NAME=RESULT lines on stdout.
func child(mode string) int {
	switch mode {
	case "userns", "userns-control":
		if mode == "userns" {
			if err := sandbox.Apply(sandbox.Agent()); err != nil {
				fmt.Println("apply=" + err.Error())
				return 1
			}
		}
		report("fork", exec.Command("true").Run())
		cmd := exec.Command("true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
		report("fork_newuser", cmd.Run())
		return 0
	case "daemon":
		return childDaemon()
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 2
}

func report(name string, err error) {
	var errno syscall.Errno
	switch {
	case err == nil:
		fmt.Printf("%s=OK\n", name)
	case errors.As(err, &errno):
		fmt.Printf("%s=%s\n", name, unix.ErrnoName(errno))
	default:
		fmt.Printf("%s=%s\n", name, strings.ReplaceAll(err.Error(), "\n", " "))
	}
}

// runChild re-executes the test binary in the given child mode and returns its NAME=RESULT map.
func runChild(t *testing.T, mode string, env ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v\nstdout:\n%s\nstderr:\n%s", mode, err, out, stderr.String())
	}
	return parseResults(t, out)
}

func parseResults(t *testing.T, out []byte) map[string]string {
	t.Helper()
	res := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		res[name] = val
	}
	if len(res) == 0 {
		t.Fatalf("no results in output:\n%s", out)
	}
	return res
}

func TestProfilesAssemble(t *testing.T) {
	for _, name := range sandbox.Names() {
		p, err := sandbox.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		insts, err := p.Assemble()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		raw, err := bpf.Assemble(insts)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		if len(raw) < 10 || len(raw) > 4096 {
			t.Errorf("%s: %d instructions", name, len(raw))
		}
		// The architecture check comes first and kills on a foreign ABI.
		if ld, ok := insts[0].(bpf.LoadAbsolute); !ok || ld.Off != 4 {
			t.Errorf("%s: first instruction %v, want a load of seccomp_data.arch", name, insts[0])
		}
		if ret, ok := insts[2].(bpf.RetConstant); !ok || ret.Val != unix.SECCOMP_RET_KILL_PROCESS {
			t.Errorf("%s: foreign-arch action %v, want kill_process", name, insts[2])
		}
	}
	if _, err := sandbox.Lookup("nope"); !errors.Is(err, sandbox.ErrUnknownProfile) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Lookup(nope) = %v, want ErrUnknownProfile naming it", err)
	}
	bad := sandbox.Agent()
	bad.Rules = append([]sandbox.Rule{{Why: "typo", Action: bad.Default, Syscalls: []string{"ptrac"}}}, bad.Rules...)
	if _, err := bad.Assemble(); err == nil || !strings.Contains(err.Error(), `"ptrac"`) {
		t.Errorf("unknown syscall: err = %v, want one naming it", err)
	}
}

// The agent profile names every syscall the design lists.
func TestAgentProfileCoversDesign(t *testing.T) {
	want := []string{"ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup",
		"io_uring_enter", "io_uring_register", "bpf", "perf_event_open", "userfaultfd",
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "keyctl",
		"add_key", "request_key", "mount", "umount2", "pivot_root", "move_mount", "fsopen",
		"fsconfig", "fsmount", "fspick", "open_tree", "mount_setattr", "pidfd_getfd", "unshare",
		"clone", "clone3", "setns"}
	have := map[string]bool{}
	for _, s := range sandbox.Agent().Syscalls() {
		have[s] = true
	}
	for _, s := range want {
		if !have[s] {
			t.Errorf("agent profile does not mention %s", s)
		}
	}
}

func TestUserNamespaceCloneDeniedForkWorks(t *testing.T) {
	control := runChild(t, "userns-control")
	if control["fork"] != "OK" {
		t.Fatalf("control: plain fork+exec failed: %s", control["fork"])
	}
	if control["fork_newuser"] != "OK" {
		t.Logf("control: this host refuses user namespaces even without the filter (%s); the "+
			"EPERM below is still asserted", control["fork_newuser"])
	}
	got := runChild(t, "userns")
	if got["fork"] != "OK" {
		t.Errorf("under the agent profile a plain fork+exec failed: %s", got["fork"])
	}
	if got["fork_newuser"] != "EPERM" {
		t.Errorf("under the agent profile clone(CLONE_NEWUSER) = %s, want EPERM", got["fork_newuser"])
	}
}

// TestDaemonProfile runs the daemon's everyday work under DaemonProfile in a child process and
// checks that what the daemon never does is refused.
func TestDaemonProfile(t *testing.T) {
	dir := t.TempDir()
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- victim.Wait() }()
	t.Cleanup(func() {
		_ = victim.Process.Kill()
		<-waited
	})

	got := runChild(t, "daemon", "DW_DIR="+dir, "DW_VICTIM="+strconv.Itoa(victim.Process.Pid))
	t.Logf("child results: %v", got)
	allowed := []string{"seccomp_all_threads", "files", "goroutines_timers", "random", "unix_stream",
		"http_tcp", "unixgram_scm_rights", "pidfd_kill"}
	if got["bpf_control"] == "OK" {
		allowed = append(allowed, "bpf_array_map", "bpf_ringbuf_mmap")
	} else {
		t.Logf("bpf map creation fails even without the filter (%s); bpf checks not asserted", got["bpf_control"])
	}
	for _, name := range allowed {
		if got[name] != "OK" {
			t.Errorf("%s under the daemon profile: %q, want OK", name, got[name])
		}
	}
	for _, name := range []string{"execve", "mount", "unshare_newns", "ptrace", "clone_newuser"} {
		if got[name] != "EPERM" {
			t.Errorf("%s under the daemon profile: %q, want EPERM", name, got[name])
		}
	}
	select {
	case err := <-waited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("victim ended with %v, want SIGKILL from the child's pidfd", err)
		}
		waited <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Errorf("victim still running; pidfd_send_signal did not reach it")
	}
}

func childDaemon() int {
	dir := os.Getenv("DW_DIR")
	victim, _ := strconv.Atoi(os.Getenv("DW_VICTIM"))
	if fd, err := bpfMapCreate(unix.BPF_MAP_TYPE_ARRAY, 4, 8, 1); err != nil {
		report("bpf_control", err)
	} else {
		unix.Close(fd)
		report("bpf_control", nil)
	}

	if err := sandbox.ApplyDaemon(); err != nil {
		fmt.Println("apply=" + err.Error())
		return 1
	}

	report("seccomp_all_threads", checkAllThreadsFiltered())
	report("files", checkFiles(dir))
	report("goroutines_timers", checkGoroutines())
	_, err := rand.Read(make([]byte, 32))
	report("random", err)
	report("unix_stream", checkUnixStream(dir))
	report("http_tcp", checkHTTP())
	report("unixgram_scm_rights", checkUnixgram(dir))
	report("bpf_array_map", checkBPFArray())
	report("bpf_ringbuf_mmap", checkRingbuf())
	report("pidfd_kill", checkPidfdKill(victim))

	report("execve", exec.Command("/bin/true").Run())
	report("mount", unix.Mount("none", dir, "tmpfs", 0, ""))
	report("unshare_newns", unix.Unshare(unix.CLONE_NEWNS))
	_, _, e := unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, 0x3fffffff, 0)
	report("ptrace", errnoOrNil(e))
	// CLONE_NEWUSER|CLONE_FS is EINVAL in the kernel, so nothing is ever created.
	_, _, e = unix.RawSyscall(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_FS, 0, 0)
	report("clone_newuser", errnoOrNil(e))
	return 0
}

func errnoOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func checkAllThreadsFiltered() error {
	// Hold a few more threads (created after the filter went on) while the check runs.
	var started sync.WaitGroup
	done := make(chan struct{})
	defer close(done)
	for range 4 {
		started.Add(1)
		go func() {
			runtime.LockOSThread()
			started.Done()
			<-done
		}()
	}
	started.Wait()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "status"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte("\nSeccomp:\t2\n")) || !bytes.Contains(b, []byte("\nNoNewPrivs:\t1\n")) {
			return fmt.Errorf("thread %s is not filtered", task.Name())
		}
	}
	return nil
}

func checkFiles(dir string) error {
	sub := filepath.Join(dir, "state")
	if err := os.MkdirAll(sub, 0o750); err != nil {
		return err
	}
	tmp := filepath.Join(sub, "history.tmp")
	if err := os.WriteFile(tmp, []byte("event\n"), 0o600); err != nil {
		return err
	}
	final := filepath.Join(sub, "history")
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := os.Chmod(final, 0o640); err != nil {
		return err
	}
	if err := os.Chown(final, os.Getuid(), os.Getgid()); err != nil {
		return err
	}
	if _, err := os.ReadDir(sub); err != nil {
		return err
	}
	if _, err := os.ReadFile("/proc/self/cmdline"); err != nil {
		return err
	}
	if _, err := os.Readlink("/proc/self/exe"); err != nil {
		return err
	}
	return os.RemoveAll(sub)
}

func checkGoroutines() error {
	var wg sync.WaitGroup
	results := make(chan int, 64)
	for i := range 64 {
		wg.Go(func() {
			time.Sleep(time.Millisecond)
			results <- i
		})
	}
	wg.Wait()
	close(results)
	n := 0
	for range results {
		n++
	}
	runtime.GC()
	timer := time.NewTimer(5 * time.Millisecond)
	<-timer.C
	if n != 64 {
		return fmt.Errorf("%d of 64 goroutines reported", n)
	}
	return nil
}

func checkUnixStream(dir string) error {
	path := filepath.Join(dir, "events.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := os.Chmod(path, 0o660); err != nil {
		return err
	}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo returned %q", buf)
	}
	return nil
}

func checkHTTP() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "metrics")
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(body) != "metrics" {
		return fmt.Errorf("got %q", body)
	}
	return nil
}

// checkUnixgram does what journald and sd_notify clients do: datagrams on a unix socket, with an
// fd passed along (journald's path for large entries).
func checkUnixgram(dir string) error {
	addr := &net.UnixAddr{Name: filepath.Join(dir, "journal.sock"), Net: "unixgram"}
	server, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		return err
	}
	defer server.Close()
	client, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(client)
	memfd, err := unix.MemfdCreate("journal-entry", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	defer unix.Close(memfd)
	to := &unix.SockaddrUnix{Name: addr.Name}
	if err := unix.Sendmsg(client, []byte("MESSAGE=hi\n"), unix.UnixRights(memfd), to, 0); err != nil {
		return err
	}
	buf, oob := make([]byte, 64), make([]byte, 64)
	n, oobn, _, _, err := server.ReadMsgUnix(buf, oob)
	if err != nil {
		return err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("control messages %v: %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("rights %v: %v", fds, err)
	}
	unix.Close(fds[0])
	if string(buf[:n]) != "MESSAGE=hi\n" {
		return fmt.Errorf("got %q", buf[:n])
	}
	return nil
}

func bpfSyscall(cmd uintptr, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
	if e != 0 {
		return 0, e
	}
	return r, nil
}

func bpfMapCreate(mapType, keySize, valueSize, maxEntries uint32) (int, error) {
	attr := struct{ mapType, keySize, valueSize, maxEntries, flags uint32 }{mapType, keySize, valueSize, maxEntries, 0}
	fd, err := bpfSyscall(unix.BPF_MAP_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return int(fd), err
}

func checkBPFArray() error {
	fd, err := bpfMapCreate(unix.BPF_MAP_TYPE_ARRAY, 4, 8, 1)
	if err != nil {
		return fmt.Errorf("map create: %w", err)
	}
	defer unix.Close(fd)
	key, value, out := uint32(0), uint64(0xd0c4), uint64(0)
	type elemAttr struct {
		fd, _        uint32
		key, val, fl uint64
	}
	upd := elemAttr{fd: uint32(fd), key: uint64(uintptr(unsafe.Pointer(&key))), val: uint64(uintptr(unsafe.Pointer(&value)))}
	if _, err := bpfSyscall(unix.BPF_MAP_UPDATE_ELEM, unsafe.Pointer(&upd), unsafe.Sizeof(upd)); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	look := elemAttr{fd: uint32(fd), key: uint64(uintptr(unsafe.Pointer(&key))), val: uint64(uintptr(unsafe.Pointer(&out)))}
	if _, err := bpfSyscall(unix.BPF_MAP_LOOKUP_ELEM, unsafe.Pointer(&look), unsafe.Sizeof(look)); err != nil {
		return fmt.Errorf("lookup: %w", err)
	}
	runtime.KeepAlive(&key)
	if out != value {
		return fmt.Errorf("lookup returned %#x", out)
	}
	return nil
}

func checkRingbuf() error {
	page := os.Getpagesize()
	fd, err := bpfMapCreate(unix.BPF_MAP_TYPE_RINGBUF, 0, 0, uint32(page))
	if err != nil {
		return fmt.Errorf("ringbuf create: %w", err)
	}
	defer unix.Close(fd)
	consumer, err := unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap consumer page: %w", err)
	}
	defer unix.Munmap(consumer)
	producer, err := unix.Mmap(fd, int64(page), 2*page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap producer pages: %w", err)
	}
	defer unix.Munmap(producer)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	return unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
}

func checkPidfdKill(pid int) error {
	if pid <= 0 {
		return errors.New("no victim pid")
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	return unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
}

package sandbox_test

import (
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

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/sandbox"
)

// observedDaemonSyscalls is every syscall the filtered daemon made in test/daemon, test/e2e and
// test/setgid (strace -f attached to each `dockwatch run` once /proc/PID/status said Seccomp: 2,
// and a run with SECCOMP_RET_LOG as the default action, whose only audit record was membarrier).
// The profile must keep allowing all of them.
var observedDaemonSyscalls = []string{
	"accept4", "bpf", "clock_gettime", "clone", "close", "connect", "epoll_create1", "epoll_ctl",
	"epoll_pwait", "eventfd2", "exit_group", "fcntl", "fstat", "futex", "getdents64", "getpeername",
	"getpid", "getsockname", "getsockopt", "gettid", "madvise", "membarrier", "mmap", "munmap",
	"nanosleep", "newfstatat", "openat", "perf_event_open", "pread64", "read", "readlinkat",
	"renameat", "restart_syscall", "rt_sigprocmask", "rt_sigreturn", "sched_getaffinity",
	"sched_yield", "setsockopt", "sigaltstack", "socket", "statfs", "tgkill", "unlinkat", "write",
}

// TestDaemonProfileAllowsObserved runs the assembled filter over every observed syscall.
func TestDaemonProfileAllowsObserved(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the observed list was recorded on x86_64; running on %s", runtime.GOARCH)
	}
	info, err := arch.GetInfo("amd64")
	if err != nil {
		t.Fatal(err)
	}
	insts, err := sandbox.DaemonProfile().Assemble()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	threadFlags := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS)
	for _, name := range observedDaemonSyscalls {
		nr, ok := info.SyscallNames[name]
		if !ok {
			t.Fatalf("%s is not an x86_64 syscall", name)
		}
		got, err := vm.Run(seccompData(uint32(nr), auditArchX8664, threadFlags))
		if err != nil {
			t.Fatal(err)
		}
		if uint32(got) != unix.SECCOMP_RET_ALLOW {
			t.Errorf("daemon profile answers %s with %#x; the daemon makes this call after setup", name, got)
		}
	}
}

// TestDaemonProfileArches checks that every name in the profile exists on both supported
// architectures (or its other spelling does), so ApplyDaemon does not fail on arm64 with an
// unknown syscall.
func TestDaemonProfileArches(t *testing.T) {
	for _, a := range []string{"amd64", "arm64"} {
		info, err := arch.GetInfo(a)
		if err != nil {
			t.Fatal(err)
		}
		// One spelling of fstatat per table.
		alternative := map[string]string{"newfstatat": "fstatat", "fstatat": "newfstatat"}
		for _, name := range sandbox.DaemonProfile().Syscalls() {
			_, ok := info.SyscallNames[name]
			if _, alt := info.SyscallNames[alternative[name]]; !ok && !alt {
				t.Errorf("daemon profile names %s, which %s does not have", name, a)
			}
		}
	}
}

// TestDaemonProfile runs the daemon's everyday work under DaemonProfile in a child process, the
// way the daemon does it: listeners are opened before the filter, used after it. It checks that
// what the daemon never does after setup is refused.
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
		"http_tcp", "unixgram_scm_rights", "resolver", "pidfd_kill"}
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
	// nohz_full kernels answer EINVAL; the filter must not be the one saying no.
	if got["membarrier"] == "EPERM" || got["membarrier"] == "" {
		t.Errorf("membarrier under the daemon profile: %q, want it to reach the kernel", got["membarrier"])
	}
	for _, name := range []string{"mount", "unshare_newns", "clone_newuser", "listen", "chmod", "chown",
		"kill", "setresuid", "setrlimit", "prctl", "inotify", "memfd_create", "setns"} {
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

// TestDaemonProfileKills checks that exec and ptrace end the daemon (SIGSYS) instead of failing.
func TestDaemonProfileKills(t *testing.T) {
	for _, call := range []string{"execve", "ptrace", "finit_module"} {
		t.Run(call, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=daemon-kill", "DW_CALL="+call)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if !strings.Contains(stdout.String(), "applied=OK") {
				t.Fatalf("child did not apply the profile (%v):\n%s\n%s", err, stdout.String(), stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGSYS {
				t.Errorf("%s under the daemon profile: child ended with %v, want SIGSYS\n%s", call, err, stdout.String())
			}
		})
	}
}

func childDaemonKill() int {
	if err := sandbox.ApplyDaemon(); err != nil {
		fmt.Println("apply=" + err.Error())
		return 1
	}
	fmt.Println("applied=OK")
	var e syscall.Errno
	switch os.Getenv("DW_CALL") {
	case "execve":
		e = errnoOf(syscall.Exec("/bin/true", []string{"true"}, nil))
	case "ptrace":
		_, _, e = unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, 0x3fffffff, 0)
	case "finit_module":
		_, _, e = unix.Syscall(unix.SYS_FINIT_MODULE, ^uintptr(0), 0, 0)
	}
	fmt.Printf("survived=%s\n", unix.ErrnoName(e))
	return 0
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	errors.As(err, &e)
	return e
}

// daemonListeners are what `dockwatch run` opens before it applies the filter.
type daemonListeners struct {
	events      net.Listener  // the event socket
	metrics     net.Listener  // the Prometheus endpoint
	journal     *net.UnixConn // a stand-in for journald's socket
	journalAddr *net.UnixAddr
}

func openDaemonListeners(dir string) (*daemonListeners, error) {
	l := &daemonListeners{}
	var err error
	if l.events, err = net.Listen("unix", filepath.Join(dir, "events.sock")); err != nil {
		return nil, err
	}
	if l.metrics, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	l.journalAddr = &net.UnixAddr{Name: filepath.Join(dir, "journal.sock"), Net: "unixgram"}
	if l.journal, err = net.ListenUnixgram("unixgram", l.journalAddr); err != nil {
		return nil, err
	}
	return l, nil
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
	ls, err := openDaemonListeners(dir)
	if err != nil {
		fmt.Println("listen=" + err.Error())
		return 1
	}

	if err := sandbox.ApplyDaemon(); err != nil {
		fmt.Println("apply=" + err.Error())
		return 1
	}

	report("seccomp_all_threads", checkAllThreadsFiltered())
	report("files", checkFiles(dir))
	report("goroutines_timers", checkGoroutines())
	_, err = rand.Read(make([]byte, 32))
	report("random", err)
	report("unix_stream", checkUnixStream(ls.events))
	report("http_tcp", checkHTTP(ls.metrics))
	report("unixgram_scm_rights", checkUnixgram(dir, ls))
	report("resolver", checkResolver())
	report("bpf_array_map", checkBPFArray())
	report("bpf_ringbuf_mmap", checkRingbuf())
	report("pidfd_kill", checkPidfdKill(victim))
	_, _, e := unix.Syscall(unix.SYS_MEMBARRIER, 1 /* MEMBARRIER_CMD_GLOBAL */, 0, 0)
	report("membarrier", errnoOrNil(e))

	report("mount", unix.Mount("none", dir, "tmpfs", 0, ""))
	report("unshare_newns", unix.Unshare(unix.CLONE_NEWNS))
	// CLONE_NEWUSER|CLONE_FS is EINVAL in the kernel, so nothing is ever created.
	_, _, e = unix.RawSyscall(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_FS, 0, 0)
	report("clone_newuser", errnoOrNil(e))
	_, err = net.Listen("tcp", "127.0.0.1:0")
	report("listen", err)
	report("chmod", os.Chmod(dir, 0o700))
	report("chown", os.Chown(dir, os.Getuid(), os.Getgid()))
	report("kill", unix.Kill(victim, 0))
	report("setresuid", unix.Setresuid(-1, -1, -1))
	rl := unix.Rlimit{Cur: 64, Max: 64}
	report("setrlimit", unix.Prlimit(0, unix.RLIMIT_CORE, &rl, nil))
	report("prctl", unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0))
	_, err = unix.InotifyInit1(unix.IN_CLOEXEC)
	report("inotify", err)
	_, err = unix.MemfdCreate("x", unix.MFD_CLOEXEC)
	report("memfd_create", err)
	report("setns", unix.Setns(0, 0))
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

// checkFiles does what a reload and the exit do to files: read the config and /proc, write a
// pin-like file next to the old one and rename it over, list and remove.
func checkFiles(dir string) error {
	sub := filepath.Join(dir, "pins")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(sub, "meta_new")
	if err := os.WriteFile(tmp, []byte("meta\n"), 0o600); err != nil {
		return err
	}
	final := filepath.Join(sub, "meta")
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if _, err := os.Stat(final); err != nil {
		return err
	}
	if names, err := os.ReadDir(sub); err != nil || len(names) != 1 {
		return fmt.Errorf("read dir: %v %v", names, err)
	}
	if _, err := os.ReadFile("/proc/self/cmdline"); err != nil {
		return err
	}
	if _, err := os.Readlink("/proc/self/exe"); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
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

// checkUnixStream accepts an event stream client on the listener opened before the filter.
func checkUnixStream(l net.Listener) error {
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("unix", l.Addr().String())
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

// checkHTTP serves a scrape on the metrics listener and makes an HTTP request, as the webhook
// does.
func checkHTTP(l net.Listener) error {
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

// checkUnixgram does what go-systemd's journal and sd_notify clients do: an autobound unix
// datagram socket, and for a large entry an unlinked file passed along with SCM_RIGHTS.
func checkUnixgram(dir string, ls *daemonListeners) error {
	defer ls.journal.Close()
	client, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("autobind: %w", err)
	}
	defer client.Close()
	f, err := os.CreateTemp(dir, "journal.")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return err
	}
	if _, _, err := client.WriteMsgUnix([]byte("MESSAGE=hi\n"), unix.UnixRights(int(f.Fd())), ls.journalAddr); err != nil {
		return err
	}
	buf, oob := make([]byte, 64), make([]byte, 64)
	n, oobn, _, _, err := ls.journal.ReadMsgUnix(buf, oob)
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

// checkResolver does what Go's resolver does for the webhook's host name: /etc/hosts, then a
// query over UDP (here to a local socket that answers with the query itself).
func checkResolver() error {
	if _, err := net.LookupHost("localhost"); err != nil {
		return fmt.Errorf("lookup localhost: %w", err)
	}
	server, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer server.Close()
	go func() {
		buf := make([]byte, 512)
		n, from, err := server.ReadFromUDP(buf)
		if err == nil {
			_, _ = server.WriteToUDP(buf[:n], from)
		}
	}()
	c, err := net.Dial("udp", server.LocalAddr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("query")); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "query" {
		return fmt.Errorf("udp answer %q", buf[:n])
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

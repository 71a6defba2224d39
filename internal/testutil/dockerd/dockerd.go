// Package dockerd starts a private instance of the distribution's dockerd for root-only
// tests: its own socket, data-root, exec-root, pidfile and managed containerd, all under one
// temporary directory, with a busybox image imported as busybox:dw.
package dockerd

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Image is the tag of the busybox image every daemon starts with.
const Image = "busybox:dw"

// applets are the busybox commands the image offers as /bin symlinks.
var applets = []string{"sh", "true", "false", "sleep", "cat", "echo", "ls", "id", "tar", "env", "ps", "touch"}

// Options configure Start.
type Options struct {
	// Group owns the socket (mode 0660). Empty means root's group only.
	Group string
}

// Daemon is a running private dockerd.
type Daemon struct {
	Dir    string // temporary directory holding everything below
	Socket string // the API socket
	Host   string // DOCKER_HOST value for Socket, unix://...
	CLI    string // the docker CLI used for root's own calls
	Log    string // dockerd's log (--debug: one "Calling METHOD PATH" line per API request)

	cmd  *exec.Cmd
	done chan struct{}
}

// Every daemon directory is os.TempDir()/dirPrefix*, holding ownerFile with the test's pid.
const (
	dirPrefix = "dwd"
	ownerFile = "owner.pid"
)

// Paths of the distribution's binaries (Debian's docker.io and busybox-static).
const (
	dockerdPath = "/usr/sbin/dockerd"
	busyboxPath = "/bin/busybox"
)

// SkipUnlessAvailable skips t unless it runs as root with dockerd, the docker CLI and a static
// busybox installed, and returns the paths of dockerd and the (resolved) CLI.
func SkipUnlessAvailable(t testing.TB) (dockerd, cli string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to run dockerd (euid %d)", os.Geteuid())
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		if _, statErr := os.Stat(dockerdPath); statErr != nil {
			t.Skipf("dockerd is not installed: %v", err)
		}
		dockerd = dockerdPath
	}
	cli, err = exec.LookPath("docker")
	if err != nil {
		t.Skipf("the docker CLI is not installed: %v", err)
	}
	if cli, err = filepath.EvalSymlinks(cli); err != nil {
		t.Fatalf("resolve docker CLI: %v", err)
	}
	if err := staticELF(busyboxPath); err != nil {
		t.Skipf("no static busybox for the test image: %v", err)
	}
	return dockerd, cli
}

// Start starts a private dockerd and stops it, with everything it started, when t ends.
// It skips t when not root or when dockerd, the docker CLI or a static busybox is missing.
func Start(t testing.TB, opt Options) *Daemon {
	t.Helper()
	dockerd, cli := SkipUnlessAvailable(t)

	if err := removeStale(); err != nil {
		t.Logf("removing what crashed runs left: %v", err)
	}
	// sun_path holds 108 bytes; t.TempDir() paths can be longer than that.
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatalf("create dockerd dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("write owner of %s: %v", dir, err)
	}
	// Others need to reach the socket; the socket's own mode decides who may connect.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod dockerd dir: %v", err)
	}
	d := &Daemon{
		Dir:    dir,
		Socket: filepath.Join(dir, "docker.sock"),
		CLI:    cli,
		Log:    filepath.Join(dir, "dockerd.log"),
		done:   make(chan struct{}),
	}
	d.Host = "unix://" + d.Socket
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("stop dockerd: %v", err)
		}
	})

	logFile, err := os.Create(d.Log)
	if err != nil {
		t.Fatalf("create dockerd log: %v", err)
	}
	defer logFile.Close()
	args := []string{
		"--debug",
		"--storage-driver=vfs",
		"--iptables=false", "--ip6tables=false", "--bridge=none",
		"--data-root=" + filepath.Join(dir, "data"),
		"--exec-root=" + filepath.Join(dir, "exec"),
		"--pidfile=" + filepath.Join(dir, "dockerd.pid"),
		"--host=" + d.Host,
		// The managed containerd keeps its state and socket under exec-root; a namespace of
		// our own keeps it apart from a system containerd, should one run.
		"--containerd-namespace=dw", "--containerd-plugins-namespace=dwp",
		"--config-file=" + filepath.Join(dir, "daemon.json"),
	}
	if opt.Group != "" {
		args = append(args, "--group="+opt.Group)
	} else {
		args = append(args, "--group=root")
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatalf("write daemon.json: %v", err)
	}
	d.cmd = exec.Command(dockerd, args...)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.cmd.Dir = dir
	// Keep the test's own environment (DOCKER_HOST and friends) out of the daemon.
	d.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()

	if err := d.waitPing(60 * time.Second); err != nil {
		t.Fatalf("dockerd did not come up: %v\n%s", err, d.tail(40))
	}
	if err := d.importBusybox(); err != nil {
		t.Fatalf("import %s: %v", Image, err)
	}
	return d
}

// Env returns the environment for root's docker CLI calls against d.
func (d *Daemon) Env() []string {
	return []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=" + d.Dir,
		"DOCKER_HOST=" + d.Host,
		"DOCKER_CONFIG=" + filepath.Join(d.Dir, "rootcli"),
	}
}

// Docker runs the docker CLI as root against d, with a timeout, and returns its stdout.
func (d *Daemon) Docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.CLI, args...)
	cmd.Env = d.Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err,
			bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// MustDocker is Docker that fails t on error.
func (d *Daemon) MustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.Docker(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Event is one entry of dockerd's event stream.
type Event struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
	TimeNano int64 `json:"timeNano"`
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s %v", e.Type, e.Action, e.Actor.ID, e.Actor.Attributes)
}

// Events returns what dockerd's `docker events --since --until` reports between since and
// until.
func (d *Daemon) Events(ctx context.Context, since, until time.Time) ([]Event, error) {
	out, err := d.Docker(ctx, "events", "--format", "{{json .}}",
		"--since", unixArg(since), "--until", unixArg(until))
	if err != nil {
		return nil, err
	}
	var events []Event
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("decode event %q: %w", line, err)
		}
		events = append(events, e)
	}
	return events, nil
}

func unixArg(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// LogOffset is the current size of dockerd's log, a mark for APICalls.
func (d *Daemon) LogOffset() int64 {
	fi, err := os.Stat(d.Log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// APICalls returns the API requests ("POST /v1.41/containers/ctr/exec") dockerd logged
// after the log offset from.
func (d *Daemon) APICalls(from int64) ([]string, error) {
	f, err := os.Open(d.Log)
	if err != nil {
		return nil, fmt.Errorf("open dockerd log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seek dockerd log: %w", err)
	}
	var calls []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		_, call, ok := strings.Cut(sc.Text(), `msg="Calling `)
		if !ok {
			continue
		}
		call, _, _ = strings.Cut(call, `"`)
		calls = append(calls, call)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read dockerd log: %w", err)
	}
	return calls, nil
}

func (d *Daemon) waitPing(timeout time.Duration) error {
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", d.Socket)
		}},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("dockerd exited: %v", d.cmd.ProcessState)
		default:
		}
		resp, err := client.Get("http://dockerd/_ping")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "OK" {
				return nil
			}
			err = fmt.Errorf("/_ping: %s %q", resp.Status, body)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s within %v: %w", d.Socket, timeout, lastErr)
}

// importBusybox builds a root filesystem from the static busybox and imports it as Image.
func (d *Daemon) importBusybox() error {
	tarPath := filepath.Join(d.Dir, "busybox-rootfs.tar")
	if err := writeRootfs(tarPath); err != nil {
		return err
	}
	if _, err := d.Docker(context.Background(), "import", tarPath, Image); err != nil {
		return err
	}
	return os.Remove(tarPath)
}

func writeRootfs(path string) error {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create rootfs tar: %w", err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	now := time.Now()
	for _, dir := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "data"} {
		mode := int64(0o755)
		if dir == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: mode, ModTime: now}); err != nil {
			return fmt.Errorf("write rootfs tar: %w", err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		body := files[name]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: now}); err != nil {
			return fmt.Errorf("write rootfs tar: %w", err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return fmt.Errorf("write rootfs tar: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: now}); err != nil {
		return fmt.Errorf("write rootfs tar: %w", err)
	}
	if _, err := tw.Write(bb); err != nil {
		return fmt.Errorf("write rootfs tar: %w", err)
	}
	for _, a := range applets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return fmt.Errorf("write rootfs tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write rootfs tar: %w", err)
	}
	return f.Close()
}

// staticELF checks that path is an ELF executable without a program interpreter, so it runs
// in an image that has no libc.
func staticELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// stop removes every container, stops dockerd (SIGTERM, then SIGKILL), ends what it left
// behind, unmounts everything under d.Dir and removes d.Dir.
func (d *Daemon) stop() error {
	var errs []error
	if d.cmd != nil && d.cmd.Process != nil {
		select {
		case <-d.done:
		default:
			if err := d.removeContainers(); err != nil {
				errs = append(errs, err)
			}
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(30 * time.Second):
				errs = append(errs, errors.New("dockerd ignored SIGTERM for 30s; killing it"))
				_ = d.cmd.Process.Kill()
				<-d.done
			}
		}
	}
	// The managed containerd and its shims name our directory on their command lines; nothing
	// else does.
	if err := killUnder(d.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(d.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", d.Dir, err))
	}
	return errors.Join(errs...)
}

// removeStale stops and removes the daemon directories of test processes that no longer run
// (crashed, or killed before their cleanups ran).
func removeStale() error {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	if err != nil {
		return fmt.Errorf("list daemon dirs: %w", err)
	}
	var errs []error
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its test still runs
		}
		if err := killUnder(dir); err != nil {
			errs = append(errs, err)
		}
		if err := unmountUnder(dir); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove stale %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Daemon) removeContainers() error {
	ctx := context.Background()
	out, err := d.Docker(ctx, "ps", "-aq")
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil
	}
	if _, err := d.Docker(ctx, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
		return fmt.Errorf("remove containers: %w", err)
	}
	return nil
}

func (d *Daemon) tail(n int) string {
	b, _ := os.ReadFile(d.Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// killUnder SIGKILLs the processes whose command line mentions dir and waits for them to go.
func killUnder(dir string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := pidsMentioning(dir)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v under %s survive SIGKILL", pids, dir)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pidsMentioning(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 { // gone, or a zombie/kernel thread
			continue
		}
		if bytes.Contains(cmdline, []byte(dir+"/")) || bytes.Contains(cmdline, []byte(dir+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder lazily unmounts every mount point at or below dir, deepest first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space and so on).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockwatch/dockwatch/internal/events"
	"github.com/dockwatch/dockwatch/internal/loader"
	"github.com/dockwatch/dockwatch/internal/testutil/daemon"
)

// syncBuffer is a bytes.Buffer safe for the run goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"run"}, &out, &errb); code != exitUsage {
		t.Errorf("run without --config: exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errb.String(), "--config is required") {
		t.Errorf("stderr %q", errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"run", "--config", filepath.Join(t.TempDir(), "missing.toml")}, &out, &errb); code != exitUsage {
		t.Errorf("run with a missing config: exit %d, want %d", code, exitUsage)
	}
	out.Reset()
	if code := run(context.Background(), []string{"run", "--help"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "--ready-file") {
		t.Errorf("run --help: exit %d, stdout %q", code, out.String())
	}
}

func TestResolveUsers(t *testing.T) {
	uids, err := resolveUsers([]string{"root", "64123"})
	if err != nil || len(uids) != 2 || uids[0] != 0 || uids[1] != 64123 {
		t.Errorf("resolveUsers = %v, %v", uids, err)
	}
	if _, err := resolveUsers([]string{"no-such-user-dw"}); err == nil || !strings.Contains(err.Error(), "no-such-user-dw") {
		t.Errorf("unknown user: %v", err)
	}
}

const testUID = 64123

// TestRunEnforces runs `dockwatch run` in-process against a temp socket and a fake trusted
// client, and checks the kills and the JSON events.
func TestRunEnforces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root to load BPF (euid %d)", os.Geteuid())
	}
	if _, err := loader.MakePlan(loader.ProbeFeatures(), "group"); err != nil {
		t.Skipf("kernel cannot run the fallback programs: %v", err)
	}
	dir, err := os.MkdirTemp("", "dwr") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client := filepath.Join(dir, "docker")
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(client, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "dockwatch.toml")
	cfg := daemon.Config{Users: []string{strconv.Itoa(testUID)}, Sockets: []string{sock}, Clients: []string{client},
		PluginDirs: []string{dir}, Access: "group", EventsSocket: filepath.Join(dir, "events.sock"), EventsGroup: "root",
		Extra: "[kernel]\nmode = \"tracepoint\"\n"}
	pinDir := fmt.Sprintf("%s-test-run-%d", loader.DefaultPinDir, os.Getpid())
	t.Cleanup(func() {
		if _, err := os.Stat(pinDir); err == nil {
			t.Errorf("pin dir %s left behind", pinDir)
			loader.Unload(pinDir)
		}
	})
	if err := cfg.Write(cfgPath); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	code, exited := -1, make(chan struct{})
	go func() {
		defer close(exited)
		// In process, the daemon's own seccomp filter would land on the test binary and refuse
		// the execs below; test/daemon covers the filtered daemon with the real binary.
		code = cmdRun(ctx, []string{"--config", cfgPath, "--ready-file", ready, "--pin-dir", pinDir, "--unload-on-exit", "--no-self-seccomp"}, &stdout, &stderr)
	}()
	stop := func() int {
		cancel()
		select {
		case <-exited:
			return code
		case <-time.After(10 * time.Second):
			t.Fatalf("dockwatch run did not stop; stderr %s", stderr.String())
		}
		return -1
	}
	t.Cleanup(func() { stop() })

	if err := daemon.WaitReady(ready, 20*time.Second, exited); err != nil {
		select {
		case <-exited:
			t.Fatalf("dockwatch run exited %d before ready; stderr %s", code, stderr.String())
		default:
			t.Fatalf("dockwatch run: %v; stderr %s", err, stderr.String())
		}
	}

	runAs := func(argv ...string) *os.ProcessState {
		cmd := exec.Command(client)
		cmd.Args = argv
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testUID, Gid: testUID}}
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("run %v: %v", argv, err)
		}
		return cmd.ProcessState
	}
	if ws := runAs("docker", "exec", "c", "sh").Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("docker exec: %v, want SIGKILL", ws)
	}
	if ps := runAs("docker", "ps"); !ps.Success() {
		t.Errorf("docker ps: %v, want success", ps)
	}
	time.Sleep(200 * time.Millisecond) // let the reader print
	if code := stop(); code != exitOK {
		t.Fatalf("dockwatch run exit %d, stderr %s", code, stderr.String())
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Errorf("ready file left behind: %v", err)
	}

	var evs []events.Event
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		var ev events.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("stdout line %q: %v", sc.Text(), err)
		}
		if ev.V != 1 || ev.Seq == 0 || ev.Time.IsZero() {
			t.Errorf("event without v/seq/time: %s", sc.Text())
		}
		evs = append(evs, ev)
	}
	find := func(verdict string) *events.Event {
		for i := range evs {
			if evs[i].Kind == events.KindExec && evs[i].Verdict == verdict && evs[i].UID != nil && *evs[i].UID == testUID {
				return &evs[i]
			}
		}
		return nil
	}
	if ev := find("block"); ev == nil {
		t.Errorf("no exec block event in\n%s", stdout.String())
	} else if ev.Action != events.ActionKilled || ev.Rule != "blocked-subcommand" || ev.Command != "exec" ||
		strings.Join(ev.Argv, " ") != "docker exec c sh" || ev.Exe != client {
		t.Errorf("block event %+v", *ev)
	}
	if ev := find("allow"); ev == nil || ev.Action != events.ActionNone || ev.Command != "ps" {
		t.Errorf("allow event %+v in\n%s", ev, stdout.String())
	}
	// [kernel] mode reaches the loader, and every event carries the mode that runs.
	for _, ev := range evs {
		if ev.Mode != "tracepoint" {
			t.Errorf("event mode %q, want tracepoint: %+v", ev.Mode, ev)
		}
	}
	if first := evs[0]; first.Kind != events.KindDaemon || !strings.Contains(first.Message, `enforcing (mode tracepoint: mode = "tracepoint" in the config;`) {
		t.Errorf("first event %+v, want the start event naming the configured mode", first)
	}
	if last := evs[len(evs)-1]; last.Kind != events.KindDaemon || !strings.Contains(last.Message, "stopping") {
		t.Errorf("last event %+v, want the daemon stopping event", last)
	}
}

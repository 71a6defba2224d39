package vm

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Suite is a Go test package that runs inside every VM of the matrix (or some of them). It is
// compiled once per run with `go test -c` (CGO_ENABLED=0, so the binary is static) and run in
// the guest as root with -test.v, from a copy of its package directory's testdata.
type Suite struct {
	Name    string        // unique: letters, digits, '-' and '_'
	Package string        // relative to the module root, e.g. "./internal/policy"
	Args    []string      // test flags after -test.v, e.g. "-test.run=^TestX$"
	Timeout time.Duration // inside the guest; 0 means DefaultSuiteTimeout
	// Configs limits the suite to these matrix configurations; empty means all.
	Configs []string
}

// DefaultSuiteTimeout bounds a suite whose Timeout is zero.
const DefaultSuiteTimeout = 3 * time.Minute

var suiteName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// BuildOptions say what goes into the initramfs.
type BuildOptions struct {
	ModuleRoot string  // directory of go.mod
	OutDir     string  // where binaries and the initramfs are written
	Suites     []Suite // in the order the guest runs them
	// Busybox is a static busybox; "" looks up busybox on PATH. Its applets become symlinks.
	Busybox string
	// DockerCLI is a static docker CLI packed as GuestDocker; "" leaves it out.
	DockerCLI string
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
}

// Built is the result of Build.
type Built struct {
	Initramfs string
	Manifest  Manifest
	Size      int64 // compressed bytes
}

// Build compiles the guest init, the fake Engine API and every suite, and writes the initramfs.
func Build(ctx context.Context, opts BuildOptions) (*Built, error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	seen := map[string]bool{}
	for _, s := range opts.Suites {
		if !suiteName.MatchString(s.Name) {
			return nil, fmt.Errorf("suite name %q: use letters, digits, '-' and '_'", s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("suite name %q is used twice", s.Name)
		}
		seen[s.Name] = true
		if !strings.HasPrefix(s.Package, "./") {
			return nil, fmt.Errorf("suite %s: package %q must start with ./ (relative to the module root)", s.Name, s.Package)
		}
	}
	binDir := filepath.Join(opts.OutDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
	}

	a := NewArchive()
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/etc", "/usr/local/bin", "/usr/sbin", "/sbin"} {
		if err := a.Dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The kernel opens /dev/console for init before anything is mounted.
	if err := a.CharDev("/dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	if err := a.Bytes("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644); err != nil {
		return nil, err
	}
	if err := a.Bytes("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644); err != nil {
		return nil, err
	}

	start := time.Now()
	initBin := filepath.Join(binDir, "init")
	if err := goBuild(ctx, opts.ModuleRoot, "build", initBin, "./vm/guestinit"); err != nil {
		return nil, err
	}
	if err := a.File("/init", initBin, 0o755); err != nil {
		return nil, err
	}
	fakeapi := filepath.Join(binDir, "fakeapi")
	if err := goBuild(ctx, opts.ModuleRoot, "build", fakeapi, "./internal/testutil/fakeapi/cmd/fakeapi"); err != nil {
		return nil, err
	}
	if err := a.File(GuestFakeAPI, fakeapi, 0o755); err != nil {
		return nil, err
	}

	var manifest Manifest
	for _, s := range opts.Suites {
		bin := filepath.Join(binDir, s.Name+".test")
		if err := goBuild(ctx, opts.ModuleRoot, "test", bin, s.Package); err != nil {
			return nil, fmt.Errorf("suite %s: %w", s.Name, err)
		}
		dir := path.Join(GuestSuites, s.Name)
		gs := GuestSuite{
			Name:       s.Name,
			Dir:        dir,
			Binary:     path.Join(dir, s.Name+".test"),
			Args:       s.Args,
			TimeoutSec: int((s.Timeout + time.Second - 1) / time.Second),
			Configs:    s.Configs,
		}
		if s.Timeout == 0 {
			gs.TimeoutSec = int(DefaultSuiteTimeout / time.Second)
		}
		if err := a.File(gs.Binary, bin, 0o755); err != nil {
			return nil, err
		}
		testdata := filepath.Join(opts.ModuleRoot, filepath.FromSlash(s.Package), "testdata")
		if fi, err := os.Stat(testdata); err == nil && fi.IsDir() {
			if err := a.Tree(path.Join(dir, "testdata"), testdata); err != nil {
				return nil, fmt.Errorf("suite %s: %w", s.Name, err)
			}
		}
		manifest.Suites = append(manifest.Suites, gs)
	}
	logf("built init, fakeapi and %d suite(s) in %s", len(opts.Suites), time.Since(start).Round(time.Millisecond))

	data, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := a.Bytes(GuestManifest, data, 0o644); err != nil {
		return nil, err
	}
	if err := addBusybox(ctx, a, opts.Busybox); err != nil {
		return nil, err
	}
	if opts.DockerCLI != "" {
		if err := checkStatic(opts.DockerCLI); err != nil {
			return nil, err
		}
		docker := stripped(ctx, opts.DockerCLI, filepath.Join(binDir, "docker"), logf)
		if err := a.File(GuestDocker, docker, 0o755); err != nil {
			return nil, err
		}
		if err := a.Symlink("/usr/bin/docker", GuestDocker); err != nil {
			return nil, err
		}
	}

	start = time.Now()
	out := filepath.Join(opts.OutDir, "initramfs.cpio.gz")
	f, err := os.Create(out)
	if err != nil {
		return nil, fmt.Errorf("create initramfs: %w", err)
	}
	if err := a.WriteGzip(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("write initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write initramfs: %w", err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil, fmt.Errorf("stat initramfs: %w", err)
	}
	logf("wrote initramfs (%.1f MiB) in %s", float64(fi.Size())/(1<<20), time.Since(start).Round(time.Millisecond))
	return &Built{Initramfs: out, Manifest: manifest, Size: fi.Size()}, nil
}

// goBuild runs `go build` or `go test -c` for a static linux/amd64 binary without symbols
// (smaller initramfs, faster unpacking under TCG).
func goBuild(ctx context.Context, moduleRoot, mode, out, pkg string) error {
	args := []string{"build"}
	if mode == "test" {
		args = []string{"test", "-c"}
	}
	args = append(args, "-ldflags=-s -w", "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	if _, err := os.Stat(out); err != nil {
		// go test -c writes nothing for a package without test files.
		return fmt.Errorf("go %s %s produced no binary (no test files?)", mode, pkg)
	}
	return nil
}

// addBusybox packs a static busybox as /bin/busybox with a symlink per applet.
func addBusybox(ctx context.Context, a *Archive, busybox string) error {
	if busybox == "" {
		var err error
		if busybox, err = exec.LookPath("busybox"); err != nil {
			return fmt.Errorf("find busybox (Debian: busybox-static): %w", err)
		}
	}
	if err := checkStatic(busybox); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	if err := a.File("/bin/busybox", busybox, 0o755); err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		p := "/" + strings.TrimPrefix(applet, "/")
		if p == "/bin/busybox" || p == "/init" || p == "/linuxrc" {
			continue
		}
		if err := a.Symlink(p, "/bin/busybox"); err != nil {
			return err
		}
	}
	return nil
}

// checkStatic refuses a dynamically linked binary: the guest has no libc.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("read %s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the guest needs a static binary", bin)
		}
	}
	return nil
}

// stripped returns a copy of bin without debug information, or bin itself when strip is
// missing or fails. Debian's static docker CLI carries DWARF; without it the initramfs is ten
// megabytes smaller and unpacks seconds faster under TCG.
func stripped(ctx context.Context, bin, out string, logf func(string, ...any)) string {
	strip, err := exec.LookPath("strip")
	if err != nil {
		logf("packing %s unstripped: %v", bin, err)
		return bin
	}
	if msg, err := exec.CommandContext(ctx, strip, "-o", out, bin).CombinedOutput(); err != nil {
		logf("packing %s unstripped: strip: %v: %s", bin, err, msg)
		return bin
	}
	return out
}

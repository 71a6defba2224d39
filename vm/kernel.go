package vm

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ErrKernelUnavailable means that apt could not provide a kernel package and none is cached.
// A caller may skip on it; every other error is a failure.
var ErrKernelUnavailable = errors.New("kernel package unavailable")

// KernelSource names a family of Debian kernel packages. The newest package that apt knows
// and whose name matches Pattern is used; a cached one serves when apt knows none.
type KernelSource struct {
	Name    string         // short name for logs, e.g. "6.1"
	Pattern *regexp.Regexp // full package name, e.g. ^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$
}

// Debian's cloud kernels: small, with the serial console, devtmpfs, BTF and the BPF LSM built
// in, so the guest needs no modules.
var (
	Debian61 = KernelSource{
		Name:    "6.1",
		Pattern: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$`),
	}
	Debian612 = KernelSource{
		Name:    "6.12",
		Pattern: regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64-unsigned$`),
	}
)

// Kernel is an extracted kernel image.
type Kernel struct {
	Package string // Debian package name
	Release string // uname -r
	Vmlinuz string // bzImage path
	Config  string // the kernel's build configuration
}

// ConfigValue returns CONFIG_name from the kernel's configuration ("" when unset).
func (k Kernel) ConfigValue(name string) (string, error) {
	data, err := os.ReadFile(k.Config)
	if err != nil {
		return "", fmt.Errorf("read kernel config: %w", err)
	}
	prefix := "CONFIG_" + name + "="
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", nil
}

// FetchKernel returns the newest kernel of src, downloading it with apt-get into cacheDir
// when it is not there yet. Only the kernel image and its config are kept.
func FetchKernel(ctx context.Context, cacheDir string, src KernelSource) (Kernel, error) {
	kernelsDir := filepath.Join(cacheDir, "kernels")
	names, aptErr := aptPackages(ctx, src.Pattern)
	if len(names) == 0 {
		cached, err := cachedPackages(kernelsDir, src.Pattern)
		if err != nil {
			return Kernel{}, err
		}
		if len(cached) == 0 {
			if aptErr == nil {
				aptErr = fmt.Errorf("apt-cache lists no package matching %s", src.Pattern)
			}
			return Kernel{}, fmt.Errorf("kernel %s: %w: %w", src.Name, ErrKernelUnavailable, aptErr)
		}
		names = cached
	}
	pkg := names[len(names)-1]
	dir := filepath.Join(kernelsDir, pkg)
	if k, err := loadKernel(dir, pkg); err == nil {
		return k, nil
	}
	if err := downloadKernel(ctx, kernelsDir, pkg); err != nil {
		return Kernel{}, fmt.Errorf("kernel %s: %w", src.Name, err)
	}
	return loadKernel(dir, pkg)
}

// aptPackages lists the package names apt knows that match pattern, oldest first.
func aptPackages(ctx context.Context, pattern *regexp.Regexp) ([]string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "pkgnames", "linux-image-").Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache pkgnames: %w", err)
	}
	var names []string
	for _, name := range strings.Fields(string(out)) {
		if pattern.MatchString(name) {
			names = append(names, name)
		}
	}
	sortVersions(names)
	return names, nil
}

func cachedPackages(kernelsDir string, pattern *regexp.Regexp) ([]string, error) {
	entries, err := os.ReadDir(kernelsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read kernel cache: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && pattern.MatchString(e.Name()) {
			if _, err := os.Stat(filepath.Join(kernelsDir, e.Name(), "vmlinuz")); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sortVersions(names)
	return names, nil
}

func loadKernel(dir, pkg string) (Kernel, error) {
	k := Kernel{
		Package: pkg,
		Vmlinuz: filepath.Join(dir, "vmlinuz"),
		Config:  filepath.Join(dir, "config"),
	}
	release, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return Kernel{}, fmt.Errorf("cached kernel %s: %w", pkg, err)
	}
	k.Release = strings.TrimSpace(string(release))
	for _, p := range []string{k.Vmlinuz, k.Config} {
		if _, err := os.Stat(p); err != nil {
			return Kernel{}, fmt.Errorf("cached kernel %s: %w", pkg, err)
		}
	}
	return k, nil
}

// downloadKernel fetches the package with apt-get download and keeps boot/vmlinuz-* and
// boot/config-* from its data archive (dpkg-deb --fsys-tarfile, the same files dpkg-deb -x
// would extract). The modules are not needed: the guest runs from the initramfs alone.
func downloadKernel(ctx context.Context, kernelsDir, pkg string) error {
	if err := os.MkdirAll(kernelsDir, 0o755); err != nil {
		return fmt.Errorf("create kernel cache: %w", err)
	}
	debDir, err := os.MkdirTemp(kernelsDir, ".deb-")
	if err != nil {
		return fmt.Errorf("create download directory: %w", err)
	}
	defer os.RemoveAll(debDir)
	// apt drops privileges to _apt for downloads; it could not write to this directory.
	if err := os.Chmod(debDir, 0o777); err != nil {
		return fmt.Errorf("chmod download directory: %w", err)
	}
	dl := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	dl.Dir = debDir
	if out, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: apt-get download %s: %w\n%s", ErrKernelUnavailable, pkg, err, out)
	}
	debs, err := filepath.Glob(filepath.Join(debDir, pkg+"_*.deb"))
	if err != nil || len(debs) != 1 {
		return fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}

	var stderr bytes.Buffer
	x := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", debs[0])
	x.Stderr = &stderr
	tarStream, err := x.StdoutPipe()
	if err != nil {
		return fmt.Errorf("dpkg-deb: %w", err)
	}
	if err := x.Start(); err != nil {
		return fmt.Errorf("dpkg-deb: %w", err)
	}
	tmp, err := os.MkdirTemp(kernelsDir, "."+pkg+"-")
	if err != nil {
		x.Process.Kill()
		x.Wait()
		return fmt.Errorf("create kernel directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	release, extractErr := extractBoot(tarStream, tmp)
	io.Copy(io.Discard, tarStream)
	if err := x.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", filepath.Base(debs[0]), err, stderr.Bytes())
	}
	if extractErr != nil {
		return fmt.Errorf("extract %s: %w", filepath.Base(debs[0]), extractErr)
	}
	if err := os.WriteFile(filepath.Join(tmp, "release"), []byte(release+"\n"), 0o644); err != nil {
		return fmt.Errorf("write kernel release: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return fmt.Errorf("chmod kernel directory: %w", err)
	}
	dir := filepath.Join(kernelsDir, pkg)
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("install kernel: %w", err)
	}
	return nil
}

// extractBoot copies ./boot/vmlinuz-RELEASE and ./boot/config-RELEASE out of a package's data
// tar into dir as vmlinuz and config, and returns RELEASE.
func extractBoot(r io.Reader, dir string) (string, error) {
	tr := tar.NewReader(r)
	var release string
	found := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		var dst, rel string
		if rel, _ = strings.CutPrefix(name, "boot/vmlinuz-"); rel != name {
			dst = "vmlinuz"
		} else if rel, _ = strings.CutPrefix(name, "boot/config-"); rel != name {
			dst = "config"
		} else {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return "", fmt.Errorf("%s is not a regular file", hdr.Name)
		}
		if release != "" && rel != release {
			return "", fmt.Errorf("package holds kernels %s and %s", release, rel)
		}
		release = rel
		f, err := os.Create(filepath.Join(dir, dst))
		if err != nil {
			return "", err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("write %s: %w", dst, err)
		}
		found[dst] = true
	}
	if !found["vmlinuz"] || !found["config"] {
		return "", fmt.Errorf("no boot/vmlinuz-* and boot/config-* in the package")
	}
	return release, nil
}

// sortVersions orders package names by their numbers (6.1.0-9 before 6.1.0-10).
func sortVersions(names []string) {
	sort.SliceStable(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
}

var digitRuns = regexp.MustCompile(`[0-9]+|[^0-9]+`)

func naturalLess(a, b string) bool {
	pa, pb := digitRuns.FindAllString(a, -1), digitRuns.FindAllString(b, -1)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] == pb[i] {
			continue
		}
		na, errA := strconv.ParseUint(pa[i], 10, 64)
		nb, errB := strconv.ParseUint(pb[i], 10, 64)
		if errA == nil && errB == nil {
			return na < nb
		}
		return pa[i] < pb[i]
	}
	return len(pa) < len(pb)
}

package loader

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Root   string // root of the mount within its filesystem
	Point  string // mount point
	FSType string
}

func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		out = append(out, mountEntry{
			Root:   unescapeMount(fields[3]),
			Point:  unescapeMount(fields[4]),
			FSType: fields[sep+1],
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for space, ...) of mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}

// findMount returns the mount point of the first mount of fstype whose root is "/".
func findMount(entries []mountEntry, fstype string) (string, bool) {
	for _, e := range entries {
		if e.FSType == fstype && e.Root == "/" {
			return e.Point, true
		}
	}
	return "", false
}

func readMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// CgroupRoot finds the cgroup v2 root, mounting a cgroup2 at runtimeDir/cgroup2 when none is
// mounted (a cgroup v1-only host). The connect gate attaches there, so it covers every process.
func CgroupRoot(runtimeDir string) (string, error) {
	entries, err := readMounts()
	if err != nil {
		return "", err
	}
	if p, ok := findMount(entries, "cgroup2"); ok {
		return p, nil
	}
	if runtimeDir == "" {
		return "", fmt.Errorf("cgroup2: not mounted and no runtime directory to mount it in")
	}
	dir := filepath.Join(runtimeDir, "cgroup2")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("cgroup2: %w", err)
	}
	if err := unix.Mount("cgroup2", dir, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "", fmt.Errorf("cgroup2: mount at %s: %w", dir, err)
	}
	return dir, nil
}

// tracefsDir finds tracefs, mounting it at /sys/kernel/tracing when it is missing.
func tracefsDir() (string, error) {
	entries, err := readMounts()
	if err != nil {
		return "", err
	}
	if p, ok := findMount(entries, "tracefs"); ok {
		return p, nil
	}
	const dir = "/sys/kernel/tracing"
	if err := unix.Mount("tracefs", dir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "", fmt.Errorf("tracefs: mount at %s: %w", dir, err)
	}
	return dir, nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

func init() {
	register("install-client", "install the trusted docker CLI setgid to the socket's group (setgid access)", cmdInstallClient)
}

const installClientUsage = `Usage: dockwatch install-client [--group G] [--dest DIR] [--source PATH]

For [docker] access = "setgid" on hosts without NixOS: copies the docker CLI into DIR as
root:G, mode 2755, and prints the config line and the PATH line to use. DIR must be owned by
root and writable by nobody else, along with every directory above it, so that no other
account can swap the copy. The supervised users must not be members of G.

Options:
`

// Defaults of install-client.
const (
	defaultClientGroup = "docker"
	defaultClientDest  = "/usr/local/libexec/dockwatch"
)

func cmdInstallClient(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dockwatch install-client", flag.ContinueOnError)
	var group, dest, source string
	fs.StringVar(&group, "group", defaultClientGroup, "the socket's `GROUP` (name or gid)")
	fs.StringVar(&dest, "dest", defaultClientDest, "root-owned `DIR` to install into")
	fs.StringVar(&source, "source", "", "the docker CLI to copy (`PATH`; default: docker from PATH)")
	if code, done := parseFlags(fs, args, installClientUsage, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dockwatch install-client: no arguments are taken\n\n")
		printUsage(fs, installClientUsage, stderr)
		return exitUsage
	}
	dst, err := installClient(group, dest, source)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch install-client: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "installed %s (root:%s, mode 2755)\n", dst, group)
	fmt.Fprintf(stdout, "\nIn the dockwatch config:\n\n[docker]\naccess = \"setgid\"\nclients = [%q]\n", dst)
	fmt.Fprintf(stdout, "\nFor the supervised users (their shell profile), ahead of every other docker:\n\nexport PATH=%s:$PATH\n",
		filepath.Dir(dst))
	return exitOK
}

// installClient copies source to dest/docker as root:group 2755 and returns that path. The
// copy is written to a temporary name and renamed into place, so a running client is never
// seen half-written.
func installClient(group, dest, source string) (string, error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("must run as root to install a set-group-ID program (euid %d)", os.Geteuid())
	}
	gid, err := lookupGroup(group)
	if err != nil {
		return "", err
	}
	if gid == 0 {
		return "", fmt.Errorf("group %q: refusing to install a client set-group-ID to gid 0", group)
	}
	if source == "" {
		if source, err = exec.LookPath("docker"); err != nil {
			return "", fmt.Errorf("find the docker CLI: %w (give --source)", err)
		}
	}
	if source, err = filepath.EvalSymlinks(source); err != nil {
		return "", fmt.Errorf("source: %w", err)
	}
	if st, err := os.Stat(source); err != nil {
		return "", fmt.Errorf("source: %w", err)
	} else if !st.Mode().IsRegular() {
		return "", fmt.Errorf("source %s: not a regular file", source)
	}
	if !filepath.IsAbs(dest) {
		return "", fmt.Errorf("dest %q: not an absolute path", dest)
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return "", fmt.Errorf("dest: %w", err)
	}
	if err := checkRootOnly(dest); err != nil {
		return "", err
	}
	dst := filepath.Join(dest, "docker")
	if dst == source {
		return "", fmt.Errorf("source and destination are the same file %s", dst)
	}
	in, err := os.Open(source)
	if err != nil {
		return "", fmt.Errorf("source: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dest, ".docker.tmp")
	if err != nil {
		return "", fmt.Errorf("dest: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	_, err = io.Copy(tmp, in)
	// The mode is set after the owner: chown clears the set-ID bits.
	if err == nil {
		err = tmp.Chown(0, gid)
	}
	if err == nil {
		err = tmp.Chmod(0o755 | os.ModeSetgid)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install %s: %w", dst, err)
	}
	return dst, nil
}

// lookupGroup resolves a group name or number.
func lookupGroup(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q: gid %q is not a number", group, g.Gid)
	}
	return gid, nil
}

// checkRootOnly checks that dir and every directory above it is owned by root and writable by
// no one else: otherwise another account could rename the setgid copy away and put its own
// program in its place.
func checkRootOnly(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); err != nil {
			return fmt.Errorf("dest: %w", err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("dest %s: %s is a symlink; give the resolved path", dir, d)
		}
		sticky := st.Mode&unix.S_ISVTX != 0
		if st.Uid != 0 {
			return fmt.Errorf("dest %s: %s is owned by uid %d, not root", dir, d, st.Uid)
		}
		// A sticky, world-writable directory (/tmp) lets others add entries but not rename
		// or remove root's; anything else writable by others is refused.
		if st.Mode&0o022 != 0 && !(sticky && d != filepath.Clean(dir)) {
			return fmt.Errorf("dest %s: %s is writable by group or others (mode %04o)", dir, d, st.Mode&0o7777)
		}
		if d == "/" {
			return nil
		}
	}
}

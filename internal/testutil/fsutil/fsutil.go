// Package fsutil copies and installs the files the privileged suites and the bench set up:
// copies of the docker CLI, set-ID programs and trees handed to a throwaway user.
package fsutil

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// CopyFile copies src to dst (created or truncated) with mode.
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return out.Close()
}

// InstallSetID copies src to dst as root:gid with mode, which carries the set-ID bits (what
// `install -o root -g GID -m MODE` does).
func InstallSetID(src, dst string, gid int, mode os.FileMode) error {
	if err := CopyFile(src, dst, 0o700); err != nil {
		return err
	}
	if err := os.Chown(dst, 0, gid); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	// chmod after chown: chown clears the set-ID bits.
	if err := os.Chmod(dst, mode); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}

// ChownTree gives root and everything below it (links themselves, not their targets) to
// uid:gid.
func ChownTree(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		return nil
	})
}

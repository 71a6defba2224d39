package vm

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Archive is the file tree of an initramfs, written as a gzip-compressed cpio "newc" archive
// (the format the kernel unpacks into its rootfs). Entries are kept in a map and written sorted,
// parents first, so adding the same path twice replaces the entry.
type Archive struct {
	entries map[string]entry
}

type entry struct {
	mode         uint32 // type and permission bits, as in stat(2)
	src          string // host file to copy (regular files)
	data         []byte // contents (regular files without src) or link target (symlinks)
	major, minor uint32 // device numbers of character devices
}

// File types of the newc mode field.
const (
	typeDir     = 0o040000
	typeRegular = 0o100000
	typeSymlink = 0o120000
	typeCharDev = 0o020000
)

// NewArchive returns an archive holding only the root directory.
func NewArchive() *Archive {
	return &Archive{entries: map[string]entry{}}
}

func clean(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("archive path %q is not absolute", p)
	}
	p = path.Clean(p)
	if p == "/" {
		return "", fmt.Errorf("archive path %q names the root", p)
	}
	return p, nil
}

func (a *Archive) add(p string, e entry) error {
	p, err := clean(p)
	if err != nil {
		return err
	}
	for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
		if old, ok := a.entries[dir]; ok {
			if old.mode&0o170000 != typeDir {
				return fmt.Errorf("archive path %q: parent %q is not a directory", p, dir)
			}
			continue
		}
		a.entries[dir] = entry{mode: typeDir | 0o755}
	}
	a.entries[p] = e
	return nil
}

// Dir adds a directory.
func (a *Archive) Dir(p string, perm os.FileMode) error {
	return a.add(p, entry{mode: typeDir | uint32(perm.Perm())})
}

// File adds the host file src at p. It is read when the archive is written.
func (a *Archive) File(p, src string, perm os.FileMode) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("add %s: %s is not a regular file", p, src)
	}
	return a.add(p, entry{mode: typeRegular | uint32(perm.Perm()), src: src})
}

// Bytes adds a regular file with the given contents.
func (a *Archive) Bytes(p string, data []byte, perm os.FileMode) error {
	return a.add(p, entry{mode: typeRegular | uint32(perm.Perm()), data: data})
}

// Symlink adds a symbolic link to target.
func (a *Archive) Symlink(p, target string) error {
	return a.add(p, entry{mode: typeSymlink | 0o777, data: []byte(target)})
}

// CharDev adds a character device node. The archive needs no privilege to hold one; the
// kernel creates the node when it unpacks the initramfs.
func (a *Archive) CharDev(p string, perm os.FileMode, major, minor uint32) error {
	return a.add(p, entry{mode: typeCharDev | uint32(perm.Perm()), major: major, minor: minor})
}

// Tree adds the host directory src (files, directories and symlinks) under p.
func (a *Archive) Tree(p, src string) error {
	return walkTree(src, func(rel string, fi os.FileInfo) error {
		dst := path.Join(p, rel)
		full := src + "/" + rel
		switch {
		case fi.IsDir():
			return a.Dir(dst, fi.Mode())
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				return fmt.Errorf("add %s: %w", dst, err)
			}
			return a.Symlink(dst, target)
		case fi.Mode().IsRegular():
			return a.File(dst, full, fi.Mode())
		default:
			return fmt.Errorf("add %s: %s is neither a file, a directory nor a symlink", dst, full)
		}
	})
}

func walkTree(root string, fn func(rel string, fi os.FileInfo) error) error {
	var walk func(rel string) error
	walk = func(rel string) error {
		entries, err := os.ReadDir(root + "/" + rel)
		if err != nil {
			return fmt.Errorf("read directory: %w", err)
		}
		for _, de := range entries {
			child := path.Join(rel, de.Name())
			fi, err := os.Lstat(root + "/" + child)
			if err != nil {
				return fmt.Errorf("stat: %w", err)
			}
			if err := fn(child, fi); err != nil {
				return err
			}
			if fi.IsDir() {
				if err := walk(child); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(".")
}

// WriteGzip writes the archive as gzip-compressed cpio newc.
func (a *Archive) WriteGzip(w io.Writer) error {
	// BestSpeed: the kernel's inflate under TCG costs about the same for every level, and the
	// host compresses tens of megabytes per run.
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if err := a.writeCpio(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	return nil
}

func (a *Archive) writeCpio(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	names := make([]string, 0, len(a.entries))
	for p := range a.entries {
		names = append(names, p)
	}
	// Sorting by path puts every directory before its contents.
	sort.Strings(names)
	cw := &cpioWriter{w: bw}
	ino := uint32(1)
	for _, p := range names {
		e := a.entries[p]
		if err := cw.entry(strings.TrimPrefix(p, "/"), e, ino); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		ino++
	}
	if err := cw.entry("TRAILER!!!", entry{}, 0); err != nil {
		return err
	}
	return bw.Flush()
}

type cpioWriter struct {
	w   *bufio.Writer
	off int64
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if rem := c.off % 4; rem != 0 {
		return c.write(make([]byte, 4-rem))
	}
	return nil
}

// entry writes one newc header, the name, and the contents, each padded to 4 bytes.
func (c *cpioWriter) entry(name string, e entry, ino uint32) error {
	var size int64
	var src *os.File
	switch {
	case e.src != "":
		f, err := os.Open(e.src)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		src, size = f, fi.Size()
	case e.mode&0o170000 == typeRegular || e.mode&0o170000 == typeSymlink:
		size = int64(len(e.data))
	}
	if size > 0xffffffff {
		return fmt.Errorf("%d bytes is too large for cpio newc", size)
	}
	nlink := uint32(1)
	if e.mode&0o170000 == typeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, uint32(size), 0, 0, e.major, e.minor, len(name)+1, 0)
	if err := c.write([]byte(hdr)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if src != nil {
		n, err := io.Copy(c.w, src)
		c.off += n
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%s changed size while archiving", e.src)
		}
	} else if err := c.write(e.data); err != nil {
		return err
	}
	return c.pad()
}

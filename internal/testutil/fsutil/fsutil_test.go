package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInstallSetID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("chown to root needs root (euid %d)", os.Geteuid())
	}
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := InstallSetID(src, dst, 12345, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o755|os.ModeSetgid {
		t.Errorf("mode %v, want setgid 0755", st.Mode())
	}
	if err := ChownTree(dir, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "#!/bin/sh\n" {
		t.Errorf("copy holds %q (%v)", b, err)
	}
	if err := CopyFile(filepath.Join(dir, "missing"), dst, 0o644); err == nil {
		t.Error("copying a missing file succeeded")
	}
}

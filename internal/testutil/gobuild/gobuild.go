// Package gobuild finds the dockwatch module and builds its programs for the tests that run
// them as separate processes (the daemon, attack helpers) and for the bench.
package gobuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// ModuleRoot returns the directory of go.mod above the working directory. `go test` runs a
// test in its package directory, so every test of the module finds it.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the dockwatch module (no go.mod above the working directory)")
		}
		dir = parent
	}
}

// Build builds pkg (a path relative to the module root, e.g. "cmd/dockwatch") into out as a
// static binary, or fails tb.
func Build(tb testing.TB, pkg, out string) {
	tb.Helper()
	root, err := ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./"+pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// Dockwatch returns the dockwatch binary to test: $DOCKWATCH_BIN when set (a prebuilt binary),
// else cmd/dockwatch built into dir.
func Dockwatch(tb testing.TB, dir string) string {
	tb.Helper()
	if bin := os.Getenv("DOCKWATCH_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(dir, "dockwatch")
	Build(tb, "cmd/dockwatch", bin)
	return bin
}

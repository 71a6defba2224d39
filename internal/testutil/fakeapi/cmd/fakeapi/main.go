// Command fakeapi serves the fake Docker Engine API of package fakeapi on a unix socket, for test
// VMs and shell-driven end-to-end tests.
//
//	fakeapi -socket PATH [-log FILE]
//
// Every request is written to FILE (or stdout) as one JSON object per line. It runs until
// SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dockwatch/dockwatch/internal/testutil/fakeapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakeapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "unix socket to listen on (required)")
	logPath := fs.String("log", "", "file to append requests to as JSON lines (default stdout)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *socket == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "fakeapi: usage: fakeapi -socket PATH [-log FILE]")
		return 2
	}
	logw := stdout
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "fakeapi: open log: %v\n", err)
			return 1
		}
		defer f.Close()
		logw = f
	}
	srv, err := fakeapi.Start(*socket)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	srv.LogTo(logw)
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fmt.Fprintf(stderr, "fakeapi: close: %v\n", err)
		return 1
	}
	return 0
}

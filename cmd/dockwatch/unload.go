package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/dockwatch/dockwatch/internal/loader"
)

func init() {
	register("unload", "remove the pinned enforcement programs (stops enforcement)", cmdUnload)
}

const unloadUsage = `Usage: dockwatch unload [--pin-dir DIR] [--config FILE]

Removes the pins that 'dockwatch run' leaves under the pin dir: the connect gate and the exec
verdict are detached (as soon as no running daemon holds them; stop the daemon first) and the
maps are freed. This ends enforcement. --config is only checked, so that scripts can pass the
same arguments as to run. Exit status: 0 (also when nothing was pinned), 1 on failure, 2 for
usage errors.

Options:
`

func cmdUnload(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dockwatch unload", flag.ContinueOnError)
	dir := fs.String("pin-dir", loader.DefaultPinDir, "pin `DIR` given to dockwatch run")
	cfgPath := fs.String("config", "", "config `FILE` (checked only)")
	if code, done := parseFlags(fs, args, unloadUsage, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 || *dir == "" {
		fmt.Fprintf(stderr, "dockwatch unload: --pin-dir must not be empty and no arguments are taken\n")
		return exitUsage
	}
	if _, err := loadConfig(*cfgPath); err != nil {
		fmt.Fprintf(stderr, "dockwatch unload: %v\n", err)
		return exitUsage
	}
	if err := loader.Unload(*dir); err != nil {
		if errors.Is(err, loader.ErrNotPinned) {
			fmt.Fprintf(stdout, "dockwatch unload: nothing pinned at %s\n", *dir)
			return exitOK
		}
		fmt.Fprintf(stderr, "dockwatch unload: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "dockwatch unload: removed the pins under %s; enforcement stops when no daemon holds the programs\n", *dir)
	return exitOK
}

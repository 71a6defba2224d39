package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/dockwatch/dockwatch/internal/config"
)

// parseFlags parses args; done is true when the command should return code right away
// (help, or a usage error). The usage goes to stdout for --help, else to stderr.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, done bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, usage, stdout)
			return exitOK, true
		}
		fmt.Fprintln(stderr)
		printUsage(fs, usage, stderr)
		return exitUsage, true
	}
	return 0, false
}

// printUsage writes usage and the flags' defaults to w.
func printUsage(fs *flag.FlagSet, usage string, w io.Writer) {
	fmt.Fprint(w, usage)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// loadConfig loads the config file at path, or returns the built-in defaults when path is "".
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

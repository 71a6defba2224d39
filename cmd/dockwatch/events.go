package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/dockwatch/dockwatch/internal/events"
)

func init() {
	register("events", "show the daemon's event history and follow new events", cmdEvents)
}

const eventsUsage = `Usage: dockwatch events [-f] [-n N] [--since DUR] [--verdict V] [--user U] [-o json|text]
                        [--socket PATH | --config FILE]

Prints the events the running daemon keeps (events.history), oldest first, then with -f
follows new ones until interrupted. Filters apply to both. -o text (the default) prints one
line per event: time, user, verdict, action, command, rule, argv; -o json prints the schema v1
JSON lines. Reading the event socket takes root or membership in events.group.
Exit status: 0, 1 when the daemon cannot be reached, 2 for usage errors.

Options:
`

var verdicts = []string{"allow", "block", "audit", "not-client", "undecided", "none"}

func cmdEvents(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dockwatch events", flag.ContinueOnError)
	var sf socketFlags
	sf.add(fs)
	follow := fs.Bool("f", false, "follow: keep printing new events")
	n := fs.Int("n", 0, "only the last `N` matching events of the history (0: all)")
	since := fs.Duration("since", 0, "only events of the last `DUR` (e.g. 10m)")
	verdict := fs.String("verdict", "", "only events with verdict `V` (allow, block, audit, not-client, undecided, none)")
	userF := fs.String("user", "", "only events of user `U` (name or uid)")
	output := fs.String("o", "text", "output `format`: text or json")
	if code, done := parseFlags(fs, args, eventsUsage, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "dockwatch events: no arguments are taken, got %q\n", fs.Args())
		return exitUsage
	case *output != "text" && *output != "json":
		fmt.Fprintf(stderr, "dockwatch events: -o must be text or json, got %q\n", *output)
		return exitUsage
	case *n < 0:
		fmt.Fprintf(stderr, "dockwatch events: -n must not be negative\n")
		return exitUsage
	case *since < 0:
		fmt.Fprintf(stderr, "dockwatch events: --since must not be negative\n")
		return exitUsage
	case *verdict != "" && !slices.Contains(verdicts, *verdict):
		fmt.Fprintf(stderr, "dockwatch events: --verdict %q: must be one of %v\n", *verdict, verdicts)
		return exitUsage
	}
	path, err := sf.path()
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch events: %v\n", err)
		return exitUsage
	}
	req := events.Request{Op: "events", N: *n, Follow: *follow, Verdict: *verdict, User: *userF}
	if *since > 0 {
		req.Since = time.Now().Add(-*since)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := request(ctx, path, req)
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch events: %v (is dockwatch run running, and may you read its socket?)\n", err)
		return 1
	}
	defer c.Close()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	rd := bufio.NewReaderSize(c, 64*1024)
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 {
			if e := serverError(line); e != nil {
				out.Flush()
				fmt.Fprintf(stderr, "dockwatch events: %v\n", e)
				return 1
			}
			if *output == "json" {
				out.Write(line)
			} else {
				var ev events.Event
				if err := json.Unmarshal(line, &ev); err != nil {
					fmt.Fprintf(stderr, "dockwatch events: bad event line: %v\n", err)
					continue
				}
				fmt.Fprintln(out, events.Text(ev))
			}
			if rd.Buffered() == 0 {
				out.Flush()
			}
		}
		if err != nil {
			if ctx.Err() != nil || err == io.EOF {
				return exitOK
			}
			out.Flush()
			fmt.Fprintf(stderr, "dockwatch events: %v\n", err)
			return 1
		}
	}
}

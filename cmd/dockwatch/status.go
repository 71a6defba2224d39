package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dockwatch/dockwatch/internal/config"
	"github.com/dockwatch/dockwatch/internal/events"
)

func init() {
	register("status", "show the running daemon's mode, programs, users, clients and counters", cmdStatus)
}

const statusUsage = `Usage: dockwatch status [-o json|text] [--socket PATH | --config FILE]

Asks the running daemon over its event socket ({"op":"status"}; readable by root and
events.group) and prints its enforcement mode and why, the attached programs, the pins,
the supervised users, the trusted clients (path, dev, ino), the protected sockets and the
counters. Exit status: 0, 1 when the daemon cannot be reached, 2 for usage errors.

Options:
`

// Status is the daemon's answer to {"op":"status"}.
type Status struct {
	Version     string         `json:"version"`
	Started     time.Time      `json:"started"`
	Config      string         `json:"config"`
	Mode        string         `json:"mode"`
	ModeReason  string         `json:"mode_reason"`
	SelfSeccomp string         `json:"self_seccomp,omitempty"` // on, off or unsupported
	Gate        string         `json:"gate"`
	PostCheck   bool           `json:"post_connect_check"`
	Access      string         `json:"access"`
	PolicyMode  string         `json:"policy_mode"`
	Attached    []string       `json:"attached"`
	PinDir      string         `json:"pin_dir"`
	PinsAdopted bool           `json:"pins_adopted"`
	Supervised  []StatusUser   `json:"supervised"`
	Clients     []StatusClient `json:"trusted_clients"`
	Sockets     []string       `json:"protected_sockets"`
	Warnings    []string       `json:"warnings,omitempty"`
	LastReload  string         `json:"last_reload,omitempty"`
	Counters    events.Counts  `json:"counters"`
}

// StatusUser is one supervised account.
type StatusUser struct {
	Name string `json:"name,omitempty"`
	UID  uint32 `json:"uid"`
}

// StatusClient is a trusted binary by identity.
type StatusClient struct {
	Path   string `json:"path"`
	Binary string `json:"binary"`
	Dev    string `json:"dev"` // major:minor
	Ino    uint64 `json:"ino"`
}

func (d *runDaemon) status() Status {
	st := d.state()
	d.mu.Lock()
	last := d.lastReload
	d.mu.Unlock()
	e := st.e
	selfSeccomp, _ := d.selfSeccomp.Load().(string)
	s := Status{
		Version: versionString(), Started: d.started.UTC(), Config: d.flags.configPath,
		Mode: e.Plan.Mode, ModeReason: e.Plan.ModeReason, SelfSeccomp: selfSeccomp,
		Gate: e.Plan.Gate.String(), PostCheck: e.Plan.PostCheck,
		Access: st.cfg.Docker.Access, PolicyMode: st.cfg.Policy.Mode, Attached: e.Attached(),
		Sockets: st.cfg.Docker.Sockets, Warnings: e.Warnings, LastReload: last, Counters: d.counts(),
	}
	if p := e.Pins(); p != nil {
		s.PinDir, s.PinsAdopted = p.Dir, p.Adopted
	}
	names := map[uint32]string{}
	for _, u := range st.cfg.Supervise.Users {
		if uids, err := resolveUsers([]string{u}); err == nil && fmt.Sprint(uids[0]) != u {
			names[uids[0]] = u
		}
	}
	for _, uid := range st.opts.UIDs {
		s.Supervised = append(s.Supervised, StatusUser{Name: names[uid], UID: uid})
	}
	for _, c := range e.Clients {
		s.Clients = append(s.Clients, StatusClient{Path: c.Path, Binary: c.Binary.String(),
			Dev: fmt.Sprintf("%d:%d", c.Dev>>20, c.Dev&(1<<20-1)), Ino: c.Ino})
	}
	return s
}

// socketFlags are the options that find the event socket.
type socketFlags struct{ socket, config string }

func (f *socketFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.socket, "socket", "", "event socket `PATH` (default: events.socket of --config, else "+config.Default().Events.Socket+")")
	fs.StringVar(&f.config, "config", "", "read events.socket from config `FILE`")
}

func (f *socketFlags) path() (string, error) {
	if f.socket != "" {
		return f.socket, nil
	}
	if f.config != "" {
		cfg, err := config.Load(f.config)
		if err != nil {
			return "", err
		}
		if cfg.Events.Socket == "" {
			return "", errors.New("events.socket is empty in the config: the event socket is off")
		}
		return cfg.Events.Socket, nil
	}
	return config.Default().Events.Socket, nil
}

// request connects to the event socket and sends req.
func request(ctx context.Context, path string, req events.Request) (net.Conn, error) {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("event socket: %w", err)
	}
	context.AfterFunc(ctx, func() { c.Close() })
	data, _ := json.Marshal(req)
	if _, err := c.Write(append(data, '\n')); err != nil {
		c.Close()
		return nil, fmt.Errorf("event socket: %w", err)
	}
	return c, nil
}

// serverError is the {"error": ...} a daemon answers to a bad request.
func serverError(line []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(line, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return nil
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dockwatch status", flag.ContinueOnError)
	var sf socketFlags
	sf.add(fs)
	output := fs.String("o", "text", "output `format`: text or json")
	if code, done := parseFlags(fs, args, statusUsage, stdout, stderr); done {
		return code
	}
	if (*output != "text" && *output != "json") || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dockwatch status: -o must be text or json, and no arguments are taken\n")
		return exitUsage
	}
	path, err := sf.path()
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch status: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := request(ctx, path, events.Request{Op: "status"})
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch status: %v (is dockwatch run running?)\n", err)
		return 1
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		fmt.Fprintf(stderr, "dockwatch status: read: %v\n", err)
		return 1
	}
	if err := serverError(line); err != nil {
		fmt.Fprintf(stderr, "dockwatch status: %v\n", err)
		return 1
	}
	if *output == "json" {
		stdout.Write(line)
		return exitOK
	}
	var s Status
	if err := json.Unmarshal(line, &s); err != nil {
		fmt.Fprintf(stderr, "dockwatch status: decode: %v\n", err)
		return 1
	}
	printStatus(stdout, s)
	return exitOK
}

func printStatus(w io.Writer, s Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "dockwatch\t%s, running since %s\n", s.Version, s.Started.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "mode\t%s (%s)\n", s.Mode, s.ModeReason)
	if s.SelfSeccomp != "" {
		fmt.Fprintf(tw, "self seccomp\t%s\n", s.SelfSeccomp)
	}
	fmt.Fprintf(tw, "policy\t%s, access %s, gate %s, post-connect check %v\n", s.PolicyMode, s.Access, s.Gate, s.PostCheck)
	fmt.Fprintf(tw, "programs\t%s\n", strings.Join(s.Attached, "\n\t"))
	fmt.Fprintf(tw, "pins\t%s (adopted at start: %v)\n", s.PinDir, s.PinsAdopted)
	var users []string
	for _, u := range s.Supervised {
		if u.Name != "" {
			users = append(users, fmt.Sprintf("%s (%d)", u.Name, u.UID))
		} else {
			users = append(users, fmt.Sprint(u.UID))
		}
	}
	fmt.Fprintf(tw, "supervised\t%s\n", strings.Join(users, ", "))
	var clients []string
	for _, c := range s.Clients {
		clients = append(clients, fmt.Sprintf("%s  %s  dev %s ino %d", c.Path, c.Binary, c.Dev, c.Ino))
	}
	fmt.Fprintf(tw, "trusted clients\t%s\n", strings.Join(clients, "\n\t"))
	fmt.Fprintf(tw, "sockets\t%s\n", strings.Join(s.Sockets, ", "))
	c := s.Counters
	fmt.Fprintf(tw, "events\t%d records, %d malformed, %d dropped in the daemon, %d ring buffer drops, %d storage failures\n",
		c.Processor.Records, c.Processor.Malformed, c.Processor.Dropped, c.RingBufDrops, c.StorageFails)
	fmt.Fprintf(tw, "divergences\t%d (%d killed, %d kill failures)\n", c.Processor.Divergences, c.Processor.DivergenceKills, c.Processor.KillFailures)
	fmt.Fprintf(tw, "stream\t%d clients, %d events dropped for slow clients\n", c.Stream.Clients, c.Stream.Dropped)
	fmt.Fprintf(tw, "webhook\t%d sent, %d failed, %d dropped, %d deduplicated\n", c.Webhook.Sent, c.Webhook.Failed, c.Webhook.Dropped, c.Webhook.Deduped)
	fmt.Fprintf(tw, "reloads\t%d applied, %d rejected\n", c.Reloads, c.ReloadFailures)
	if s.LastReload != "" {
		fmt.Fprintf(tw, "last reload\t%s\n", s.LastReload)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(tw, "warning\t%s\n", warn)
	}
}

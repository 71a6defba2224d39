// Package loader loads and attaches the dockwatch BPF programs. It is the only package that
// imports cilium/ebpf.
package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// Options is everything the kernel side needs; cmd/dockwatch builds it from the config.
type Options struct {
	UIDs           []uint32 // supervised real/effective UIDs
	FollowChildren bool
	UndecidedAllow bool   // UNDECIDED verdicts run instead of being killed
	Audit          bool   // policy mode audit: the connect gate logs instead of denying
	Access         string // "group" or "setgid"

	Clients    []string // trusted docker CLI binaries
	PluginDirs []string // where the trusted docker-compose/docker-buildx live
	Plugins    []string // which plugins are trusted ("compose", "buildx")
	Sockets    []string // protected unix sockets; the /run <-> /var/run spelling is implied
	Helpers    []string // setgid access: other binaries a setgid client may exec (setgid.go)

	Tables *policy.Tables // classifier tables; nil leaves the maps empty (tests)

	// ForceEnterGate uses the sys_enter_connect path check even where cgroup/connect_unix
	// exists: the older kernels' variant, for tests.
	ForceEnterGate bool

	// Mode is the enforcement mode: "auto" (or ""), "lsm" or "tracepoint" (lsm.go).
	Mode string

	CgroupPath string // where to attach the connect gate; "" finds the cgroup v2 root
	RuntimeDir string // where a missing cgroup2 gets mounted

	// PinDir, when set, pins links and maps there and adopts what an earlier Load pinned
	// (pin.go); Close then leaves enforcement in place and Unload removes it.
	PinDir string
}

// TrustedClient is a binary identified by its file, as the kernel sees it.
type TrustedClient struct {
	Path   string
	Binary policy.Binary
	Dev    uint32 // kernel encoding: MAJOR<<20 | MINOR
	Ino    uint64
}

// Enforcer holds the loaded objects and the links, in attach order.
type Enforcer struct {
	Features Features
	Plan     Plan
	Clients  []TrustedClient
	Warnings []string
	Setgid   *SetgidAccess // setgid access; nil with group access

	coll     *ebpf.Collection
	links    []link.Link
	attached []string
	pins     *PinInfo
}

// Load probes the kernel, loads the programs that it supports with the given settings, fills
// the maps and attaches: marking and exec verdict first, then the connect gate, so a process is
// never gated before it can get a verdict. On error nothing stays loaded.
func Load(opts Options) (*Enforcer, error) {
	if len(opts.UIDs) == 0 {
		return nil, errors.New("load: no supervised uids")
	}
	e := &Enforcer{Features: ProbeFeatures()}
	f := e.Features
	if opts.ForceEnterGate {
		f.ConnectUnix = false
	}
	plans, err := ModePlans(f, opts.Access, opts.Mode)
	if err != nil {
		return nil, fmt.Errorf("load: %w (%s)", err, strings.Join(e.Features.Notes, "; "))
	}
	if e.Clients, err = ResolveClients(opts.Clients, opts.PluginDirs, opts.Plugins); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	socks, err := resolveSockets(opts.Sockets)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if e.Setgid, err = CheckSetgid(opts, e.Clients); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	for _, s := range socks {
		if s.missing != nil {
			e.Warnings = append(e.Warnings, fmt.Sprintf("socket %s: %v: only its path is protected until reload", s.path, s.missing))
		}
	}
	// Auto mode with the BPF LSM: lsm mode first; if its programs do not load or attach,
	// the fallback, saying why.
	var failed []error
	for i, plan := range plans {
		e.Plan = plan
		err = e.loadPlan(opts, socks)
		if err == nil {
			break
		}
		failed = append(failed, fmt.Errorf("mode %s: %w", plan.Mode, err))
		if i+1 == len(plans) {
			return nil, fmt.Errorf("load: %w", errors.Join(failed...))
		}
		why, _, _ := strings.Cut(err.Error(), "\n") // not the verifier log
		plans[i+1].ModeReason = fmt.Sprintf("the BPF LSM is active, but lsm mode failed (%s): tracepoint/cgroup fallback", why)
		plans[i+1].noteGate(f)
	}
	if opts.Access == "group" && e.Plan.Mode != ModeLSM {
		e.Warnings = append(e.Warnings, GroupFallbackWarning)
	}
	return e, nil
}

// loadPlan loads and attaches the programs of e.Plan. On error nothing of it stays loaded.
func (e *Enforcer) loadPlan(opts Options, socks []protectedSocket) error {
	plan := e.Plan

	spec, err := loadDockwatch()
	if err != nil {
		return fmt.Errorf("bpf spec: %w", err)
	}
	cfg := dockwatchDwConfig{
		FollowChildren: b2u8(opts.FollowChildren),
		UndecidedAllow: b2u8(opts.UndecidedAllow),
		GateAudit:      b2u8(opts.Audit),
		EnterPathCheck: b2u8(plan.Gate == GateEnterConnect),
		PostCheck:      b2u8(plan.PostCheck),
	}
	if err := spec.Variables["dw_cfg"].Set(cfg); err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	// Programs the plan does not use are not loaded at all: an older kernel would refuse
	// cgroup/connect_unix.
	for name := range spec.Programs {
		if !slices.Contains(plan.Programs, name) {
			delete(spec.Programs, name)
		}
	}
	if opts.PinDir != "" {
		if err := e.loadPinned(opts, spec, cfg, socks); err != nil {
			e.Close()
			return err
		}
		return nil
	}
	coll, err := newCollection(spec, ebpf.CollectionOptions{})
	if err != nil {
		return err
	}
	e.coll = coll
	if err := e.fill(opts, socks); err != nil {
		e.Close()
		return err
	}
	if err := e.attach(opts); err != nil {
		e.Close()
		return err
	}
	return nil
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (e *Enforcer) fill(opts Options, socks []protectedSocket) error {
	m := e.coll.Maps
	for _, uid := range opts.UIDs {
		if err := m["supervised_uids"].Put(uid, uint8(1)); err != nil {
			return fmt.Errorf("supervised uid %d: %w", uid, err)
		}
	}
	for _, c := range e.Clients {
		key := dockwatchFileId{Ino: c.Ino, Dev: c.Dev}
		if err := m["trusted_clients"].Put(key, uint8(c.Binary)); err != nil {
			return fmt.Errorf("trusted client %s: %w", c.Path, err)
		}
	}
	for i, s := range socks {
		for _, p := range s.spellings {
			var key dockwatchSockPath
			for j := range len(p) {
				key.Path[j] = int8(p[j])
			}
			if err := m["protected_paths"].Put(key, uint32(i)); err != nil {
				return fmt.Errorf("protected socket %s: %w", p, err)
			}
		}
		if s.missing == nil {
			key := dockwatchFileId{Ino: s.ino, Dev: s.dev}
			if err := m["protected_inodes"].Put(key, uint32(i)); err != nil {
				return fmt.Errorf("protected socket %s: %w", s.path, err)
			}
		}
	}
	if err := fillSetgid(m, e.Setgid); err != nil {
		return err
	}
	if opts.Tables != nil {
		if err := writeExecTables(e.coll, opts.Tables); err != nil {
			return fmt.Errorf("classifier tables: %w", err)
		}
	}
	return nil
}

func (e *Enforcer) attach(opts Options) error {
	for _, name := range e.Plan.Programs {
		l, what, err := e.attachProgram(opts, name)
		if err != nil {
			return err
		}
		e.links = append(e.links, l)
		e.attached = append(e.attached, what)
	}
	return nil
}

// attachProgram attaches one program of the plan and says where.
func (e *Enforcer) attachProgram(opts Options, name string) (link.Link, string, error) {
	prog := e.coll.Programs[name]
	var (
		l    link.Link
		err  error
		what string
	)
	switch name {
	case "dw_fork", "dw_exec":
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		what = map[string]string{"dw_fork": "tp_btf/sched_process_fork", "dw_exec": "tp_btf/sched_process_exec"}[name]
	case "dw_connect_unix":
		cg := opts.CgroupPath
		if cg == "" {
			if cg, err = CgroupRoot(opts.RuntimeDir); err != nil {
				return nil, "", fmt.Errorf("attach %s: %w", name, err)
			}
		}
		l, err = link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCgroupUnixConnect, Program: prog})
		what = "cgroup/connect_unix on " + cg
	case "dw_lsm_connect", "dw_lsm_ptrace":
		l, what, err = attachLSM(prog, name)
	case "dw_enter_connect", "dw_exit_connect":
		tp := strings.Replace(name, "dw_", "sys_", 1)
		if _, err := tracefsDir(); err != nil {
			return nil, "", fmt.Errorf("attach %s: %w", name, err)
		}
		l, err = link.Tracepoint("syscalls", tp, prog, nil)
		what = "tracepoint/syscalls/" + tp
	default:
		return nil, "", fmt.Errorf("attach %s: unknown program", name)
	}
	if err != nil {
		return nil, "", fmt.Errorf("attach %s: %w", name, err)
	}
	return l, what, nil
}

// Attached lists the attachments, in attach order.
func (e *Enforcer) Attached() []string { return slices.Clone(e.attached) }

// Close detaches in reverse order (connect gate first, exec verdict last), then frees the
// objects. It is safe to call twice.
func (e *Enforcer) Close() error {
	var errs []error
	for i := len(e.links) - 1; i >= 0; i-- {
		if err := e.links[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", e.attached[i], err))
		}
	}
	e.links, e.attached = nil, nil
	if e.coll != nil {
		e.coll.Close()
		e.coll = nil
	}
	return errors.Join(errs...)
}

// Counters are the kernel side's loss counters.
type Counters struct {
	RingBufDrops uint64 // events that did not fit in the ring buffer
	StorageFails uint64 // supervised processes whose state could not be stored
}

// Counters sums the per-CPU counters.
func (e *Enforcer) Counters() (Counters, error) {
	var c Counters
	for idx, dst := range map[uint32]*uint64{0: &c.RingBufDrops, 1: &c.StorageFails} {
		var per []uint64
		if err := e.coll.Maps["counters"].Lookup(idx, &per); err != nil {
			return c, fmt.Errorf("counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return c, nil
}

// ErrClosed is returned by EventReader.Read after Close.
var ErrClosed = errors.New("event reader closed")

// EventReader reads raw event records from the ring buffer (decode them with internal/events).
type EventReader struct{ rd *ringbuf.Reader }

// NewEventReader opens the ring buffer.
func (e *Enforcer) NewEventReader() (*EventReader, error) {
	rd, err := ringbuf.NewReader(e.coll.Maps["events"])
	if err != nil {
		return nil, fmt.Errorf("ring buffer reader: %w", err)
	}
	return &EventReader{rd: rd}, nil
}

// Read blocks for the next record and returns a copy of it.
func (r *EventReader) Read() ([]byte, error) {
	rec, err := r.rd.Read()
	if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
		return nil, ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("ring buffer: %w", err)
	}
	return rec.RawSample, nil
}

// Close unblocks Read.
func (r *EventReader) Close() error { return r.rd.Close() }

// KernelDev converts a stat st_dev to the kernel's internal dev_t (MAJOR<<20 | MINOR), which
// is what super_block.s_dev holds.
func KernelDev(stDev uint64) uint32 {
	return unix.Major(stDev)<<20 | unix.Minor(stDev)
}

// ResolveClients identifies each trusted binary by (dev, inode): the configured CLI paths
// (binary docker) and, in each plugin dir, docker-compose and docker-buildx when those plugins
// are trusted. A configured client that is missing or not a regular file is an error; a plugin
// that is not installed is not.
func ResolveClients(clients, pluginDirs, plugins []string) ([]TrustedClient, error) {
	var out []TrustedClient
	add := func(path string, bin policy.Binary, mustExist bool) error {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			if !mustExist && errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("trusted client %s: %w", path, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("trusted client %s: not a regular file", path)
		}
		out = append(out, TrustedClient{Path: path, Binary: bin, Dev: KernelDev(st.Dev), Ino: st.Ino})
		return nil
	}
	if len(clients) == 0 {
		return nil, errors.New("no trusted clients configured")
	}
	for _, c := range clients {
		if err := add(c, policy.BinDocker, true); err != nil {
			return nil, err
		}
	}
	for _, dir := range pluginDirs {
		for _, p := range plugins {
			bin, ok := policy.ParseBinary(p)
			if !ok || bin == policy.BinDocker {
				return nil, fmt.Errorf("trusted plugin %q: unknown (compose or buildx)", p)
			}
			if err := add(filepath.Join(dir, "docker-"+p), bin, false); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

type protectedSocket struct {
	path      string
	spellings []string // exact path bytes the gate compares
	dev       uint32
	ino       uint64
	missing   error // stat failed: only the paths are protected
}

// resolveSockets lists the spellings of each socket (itself, its /run <-> /var/run twin and the
// symlink-resolved path) and its inode.
func resolveSockets(paths []string) ([]protectedSocket, error) {
	if len(paths) == 0 {
		return nil, errors.New("no protected sockets configured")
	}
	var out []protectedSocket
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("protected socket %q: not an absolute path", p)
		}
		s := protectedSocket{path: p}
		addSpelling := func(q string) {
			if !slices.Contains(s.spellings, q) {
				s.spellings = append(s.spellings, q)
			}
		}
		addSpelling(p)
		if rest, ok := strings.CutPrefix(p, "/run/"); ok {
			addSpelling("/var/run/" + rest)
		} else if rest, ok := strings.CutPrefix(p, "/var/run/"); ok {
			addSpelling("/run/" + rest)
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			addSpelling(real)
		}
		for _, q := range s.spellings {
			if len(q) >= 108 {
				return nil, fmt.Errorf("protected socket %q: path longer than 107 bytes", q)
			}
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			s.missing = err
		} else if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return nil, fmt.Errorf("protected socket %s: not a socket", p)
		} else {
			s.dev, s.ino = KernelDev(st.Dev), st.Ino
		}
		out = append(out, s)
	}
	return out, nil
}

// newCollection loads spec, printing a verifier error's whole log (%+v) so it is not lost.
func newCollection(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions) (*ebpf.Collection, error) {
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("bpf objects: %w\n%+v", err, ve)
		}
		return nil, fmt.Errorf("bpf objects: %w", err)
	}
	return coll, nil
}

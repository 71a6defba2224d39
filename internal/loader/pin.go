package loader

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DefaultPinDir is where `dockwatch run` pins its links and maps.
const DefaultPinDir = "/sys/fs/bpf/dockwatch"

// Pin layout under the pin dir:
//
//	meta            a one-entry array map holding pinMeta as JSON: which object and settings
//	                the pinned programs were loaded from, and their attach order
//	maps/NAME       every map of the object (not the .rodata/.bss data sections)
//	links/PROGRAM   the link of each attached program
//
// A link stays attached as long as its pin exists, so enforcement outlives the daemon. The
// next daemon adopts the pins: the same object with the same load-time settings reuses the
// links as they are; a different one is loaded next to them, reusing every pinned map that
// is still compatible (per-process verdicts and marks, the ring buffer, the counters), and the
// old links are detached only once the new programs are attached. There is never a moment
// with no exec hook or connect gate attached.

const (
	metaFormat    = 1
	metaValueSize = 4096
	pinMetaName   = "meta"
	pinMapsDir    = "maps"
	pinLinksDir   = "links"
	newPinSuffix  = "_new" // bpffs refuses names with a dot
)

type pinMeta struct {
	Format   int       `json:"format"`
	Identity string    `json:"identity"` // sha256 of the BPF object, its settings and the plan
	Programs []string  `json:"programs"` // attach order
	Attached []string  `json:"attached"` // what each program is attached to
	Loaded   time.Time `json:"loaded"`
}

// PinInfo says what a pinned Load found and did.
type PinInfo struct {
	Dir      string
	Adopted  bool     // the pinned links were kept as they are
	Replaced []string // programs whose pinned links were replaced (a different object or settings)
	Updated  []string // programs replaced in place through a link update
	FreshMap []string // maps that could not be reused (missing or incompatible)
}

// programIdentity names the programs that a Load would attach: the object bytes, the load-time
// settings and the plan. Equal identities mean the pinned links run exactly these programs.
func programIdentity(cfg any, plan Plan, cgroup string) string {
	h := sha256.New()
	h.Write(_DockwatchBytes)
	fmt.Fprintf(h, "\x00%#v\x00%q\x00%q", cfg, plan.Programs, cgroup)
	return hex.EncodeToString(h.Sum(nil))
}

// ensureBPFFS mounts bpffs on /sys/fs/bpf when dir lies there and it is missing, creates dir
// and checks that it is on a bpffs.
func ensureBPFFS(dir string) error {
	const root = "/sys/fs/bpf"
	if dir == root || strings.HasPrefix(dir, root+"/") {
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err == nil && st.Type != unix.BPF_FS_MAGIC {
			if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
				return fmt.Errorf("mount bpffs on %s: %w", root, err)
			}
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, pinMapsDir), filepath.Join(dir, pinLinksDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("pin dir: %w", err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("pin dir %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin dir %s: not on a bpf filesystem", dir)
	}
	return nil
}

func readMeta(dir string) (*pinMeta, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinMetaName), nil)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	buf := make([]byte, metaValueSize)
	if err := m.Lookup(uint32(0), &buf); err != nil {
		return nil, fmt.Errorf("read pin meta: %w", err)
	}
	var meta pinMeta
	if err := json.Unmarshal(bytes.TrimRight(buf, "\x00"), &meta); err != nil {
		return nil, fmt.Errorf("decode pin meta: %w", err)
	}
	return &meta, nil
}

// writeMeta pins a new meta map next to the old one and renames it over it.
func writeMeta(dir string, meta pinMeta) error {
	data, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if len(data) > metaValueSize {
		return fmt.Errorf("pin meta: %d bytes, at most %d", len(data), metaValueSize)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "dw_meta", Type: ebpf.Array, KeySize: 4, ValueSize: metaValueSize, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("pin meta: %w", err)
	}
	defer m.Close()
	buf := make([]byte, metaValueSize)
	copy(buf, data)
	if err := m.Put(uint32(0), buf); err != nil {
		return fmt.Errorf("pin meta: %w", err)
	}
	tmp := filepath.Join(dir, pinMetaName+newPinSuffix)
	_ = os.Remove(tmp)
	if err := m.Pin(tmp); err != nil {
		return fmt.Errorf("pin meta: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, pinMetaName)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("pin meta: %w", err)
	}
	return nil
}

// pinnableMaps are the maps of spec that get pinned: all but the data sections, which belong to
// one object's programs.
func pinnableMaps(spec *ebpf.CollectionSpec) []string {
	var names []string
	for name := range spec.Maps {
		if !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// loadPinned is Load with pins in opts.PinDir: adopt, replace or create, then pin.
func (e *Enforcer) loadPinned(opts Options, spec *ebpf.CollectionSpec, cfg any, socks []protectedSocket) error {
	dir := opts.PinDir
	if err := ensureBPFFS(dir); err != nil {
		return err
	}
	info := &PinInfo{Dir: dir}
	e.pins = info
	identity := programIdentity(cfg, e.Plan, opts.CgroupPath)
	meta, metaErr := readMeta(dir)

	// Pinned maps, reused where compatible.
	repl := map[string]*ebpf.Map{}
	defer func() {
		for _, m := range repl {
			m.Close()
		}
	}()
	for _, name := range pinnableMaps(spec) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinMapsDir, name), nil)
		if err != nil {
			info.FreshMap = append(info.FreshMap, name)
			continue
		}
		if err := spec.Maps[name].Compatible(m); err != nil {
			m.Close()
			info.FreshMap = append(info.FreshMap, name)
			e.Warnings = append(e.Warnings, fmt.Sprintf("pinned map %s: %v: a new one replaces it", name, err))
			continue
		}
		repl[name] = m
	}

	// Pinned links, by program.
	old := map[string]link.Link{}
	closeOld := func() {
		for _, l := range old {
			l.Close()
		}
		clear(old)
	}
	defer closeOld()
	entries, _ := os.ReadDir(filepath.Join(dir, pinLinksDir))
	for _, ent := range entries {
		l, err := link.LoadPinnedLink(filepath.Join(dir, pinLinksDir, ent.Name()), nil)
		if err != nil {
			e.Warnings = append(e.Warnings, fmt.Sprintf("pinned link %s: %v", ent.Name(), err))
			continue
		}
		old[ent.Name()] = l
	}

	adopt := metaErr == nil && meta.Format == metaFormat && meta.Identity == identity &&
		len(info.FreshMap) == 0 && slices.Equal(meta.Programs, e.Plan.Programs) && len(old) == len(e.Plan.Programs)
	for _, p := range e.Plan.Programs {
		if old[p] == nil {
			adopt = false
		}
	}
	if adopt {
		// The same programs are attached already: keep their links and maps.
		e.coll = &ebpf.Collection{Programs: map[string]*ebpf.Program{}, Maps: repl}
		repl = nil
		for _, p := range e.Plan.Programs {
			e.links = append(e.links, old[p])
			delete(old, p)
		}
		e.attached = slices.Clone(meta.Attached)
		info.Adopted = true
		if err := e.syncConfig(opts, socks); err != nil {
			return err
		}
		return nil
	}

	coll, err := newCollection(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return err
	}
	e.coll = coll
	if err := e.syncConfig(opts, socks); err != nil {
		return err
	}

	// Attach the new programs while the old ones still run. A cgroup link is switched to the
	// new program in place; tracing and perf event links cannot be updated, so the new link
	// is attached next to the old one, which is detached afterwards.
	var newPins []string
	fail := func(err error) error {
		for _, p := range newPins {
			_ = os.Remove(p)
		}
		return err
	}
	for _, name := range e.Plan.Programs {
		if l := old[name]; l != nil && name == "dw_connect_unix" && meta != nil {
			if i := slices.Index(meta.Programs, name); i >= 0 && i < len(meta.Attached) {
				if err := l.Update(coll.Programs[name]); err == nil {
					e.links = append(e.links, l)
					e.attached = append(e.attached, meta.Attached[i])
					delete(old, name)
					info.Updated = append(info.Updated, name)
					continue
				}
			}
		}
		l, what, err := e.attachProgram(opts, name)
		if err != nil {
			return fail(err)
		}
		e.links = append(e.links, l)
		e.attached = append(e.attached, what)
		p := filepath.Join(dir, pinLinksDir, name+newPinSuffix)
		_ = os.Remove(p)
		if err := l.Pin(p); err != nil {
			return fail(fmt.Errorf("pin link %s: %w", name, err))
		}
		newPins = append(newPins, p)
		if old[name] != nil {
			info.Replaced = append(info.Replaced, name)
		}
	}
	// Every new program runs now: detach the old links (in reverse attach order where known,
	// so the connect gate goes before the exec verdict it relies on) and move the new pins in.
	var order []string
	if meta != nil {
		order = slices.Clone(meta.Programs)
		slices.Reverse(order)
	}
	for name := range old {
		if !slices.Contains(order, name) {
			order = append(order, name)
		}
	}
	for _, name := range order {
		l := old[name]
		if l == nil {
			continue
		}
		if err := l.Unpin(); err != nil {
			e.Warnings = append(e.Warnings, fmt.Sprintf("unpin old link %s: %v", name, err))
		}
		l.Close()
		delete(old, name)
	}
	for _, p := range newPins {
		if err := os.Rename(p, strings.TrimSuffix(p, newPinSuffix)); err != nil {
			return fail(fmt.Errorf("pin link: %w", err))
		}
	}
	for _, name := range info.FreshMap {
		p := filepath.Join(dir, pinMapsDir, name)
		_ = os.Remove(p)
		if err := coll.Maps[name].Pin(p); err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
	}
	return writeMeta(dir, pinMeta{Format: metaFormat, Identity: identity, Programs: slices.Clone(e.Plan.Programs),
		Attached: slices.Clone(e.attached), Loaded: time.Now().UTC()})
}

// stateMaps are kernel state that is never rewritten from the config; tableMaps are written by
// WriteTables. Every other map of the object is configuration and is synced by syncConfig.
var (
	stateMaps = []string{"proc_states", "connect_fds", "events", "counters", "cls_scratch"}
	tableMaps = []string{"lexicon", "nodes", "effects", "patterns", "rules", "entries", "table_gen"}
)

// syncConfig makes the configuration maps hold exactly what opts says, without a moment in
// which they hold less than either the old or the new configuration: fill writes into fresh
// scratch maps, new entries are added to the live maps, and only then stale entries are
// deleted. The classifier tables switch through the generation swap (WriteTables).
func (e *Enforcer) syncConfig(opts Options, socks []protectedSocket) error {
	scratch := &ebpf.Collection{Maps: map[string]*ebpf.Map{}}
	defer scratch.Close()
	var synced []string
	for name, m := range e.coll.Maps {
		if strings.HasPrefix(name, ".") || slices.Contains(stateMaps, name) || slices.Contains(tableMaps, name) {
			scratch.Maps[name] = m
			continue
		}
		info, err := m.Info()
		if err != nil {
			return fmt.Errorf("map %s: %w", name, err)
		}
		fresh, err := ebpf.NewMap(&ebpf.MapSpec{Name: info.Name, Type: info.Type, KeySize: info.KeySize,
			ValueSize: info.ValueSize, MaxEntries: info.MaxEntries, Flags: info.Flags})
		if err != nil {
			return fmt.Errorf("scratch copy of map %s: %w", name, err)
		}
		scratch.Maps[name] = fresh
		synced = append(synced, name)
	}
	defer func() {
		// The scratch collection shares the live maps: keep them out of its Close.
		for name := range scratch.Maps {
			if !slices.Contains(synced, name) {
				delete(scratch.Maps, name)
			}
		}
	}()
	tmp := *e
	tmp.coll = scratch
	noTables := opts
	noTables.Tables = nil
	if err := tmp.fill(noTables, socks); err != nil {
		return err
	}
	for _, name := range synced {
		if err := syncMap(e.coll.Maps[name], scratch.Maps[name]); err != nil {
			return fmt.Errorf("map %s: %w", name, err)
		}
	}
	if opts.Tables != nil {
		if err := writeExecTables(e.coll, opts.Tables); err != nil {
			return fmt.Errorf("classifier tables: %w", err)
		}
	}
	return nil
}

// syncMap copies every entry of src into dst, then deletes what dst has beyond src (hash maps;
// array entries cannot be deleted and are all overwritten).
func syncMap(dst, src *ebpf.Map) error {
	ks, vs := int(src.KeySize()), int(src.ValueSize())
	k, v := make([]byte, ks), make([]byte, vs)
	want := map[string]bool{}
	it := src.Iterate()
	for it.Next(&k, &v) {
		want[string(k)] = true
		if err := dst.Put(k, v); err != nil {
			return err
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	if dst.Type() == ebpf.Array || dst.Type() == ebpf.PerCPUArray {
		return nil
	}
	var stale [][]byte
	it = dst.Iterate()
	for it.Next(&k, &v) {
		if !want[string(k)] {
			stale = append(stale, slices.Clone(k))
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := dst.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// Pins reports what the pinned Load did; nil when Options.PinDir was empty.
func (e *Enforcer) Pins() *PinInfo { return e.pins }

// ErrNotPinned is returned by Unload when the pin dir does not exist.
var ErrNotPinned = errors.New("nothing pinned")

// Unload removes the pins in dir: the links are detached (connect gate first, exec verdict
// last) as soon as no process holds them any more, and the maps are freed. A running daemon
// keeps its own links attached until it exits.
func Unload(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", dir, ErrNotPinned)
	}
	var errs []error
	var order []string
	if meta, err := readMeta(dir); err == nil {
		order = slices.Clone(meta.Programs)
		slices.Reverse(order)
	}
	linksDir := filepath.Join(dir, pinLinksDir)
	entries, _ := os.ReadDir(linksDir)
	for _, ent := range entries {
		if !slices.Contains(order, ent.Name()) {
			order = append(order, ent.Name())
		}
	}
	for _, name := range order {
		p := filepath.Join(linksDir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin link %s: %w", name, err))
		}
	}
	// Wait until the links are gone before the maps: a program still attached keeps its maps
	// alive anyway, but the order keeps what `bpftool` shows in between sensible.
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("remove pins: %w", err))
	}
	return errors.Join(errs...)
}

// Unpin removes this enforcer's pins, so that Close detaches its links.
func (e *Enforcer) Unpin() error {
	if e.pins == nil {
		return nil
	}
	return Unload(e.pins.Dir)
}

// ErrPinDirBusy is returned by LockPinDir when another process holds the pin dir.
var ErrPinDirBusy = errors.New("pin dir is in use by another dockwatch run")

// LockPinDir creates dir on bpffs (mounting /sys/fs/bpf when needed) and takes an exclusive
// lock on it for the life of the daemon, so two daemons never adopt and rewrite the same pins.
// A reload in the same process loads the pins again without taking the lock again.
func LockPinDir(dir string) (release func(), err error) {
	if err := ensureBPFFS(dir); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pin dir %s: %w", dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrPinDirBusy)
		}
		return nil, fmt.Errorf("lock pin dir %s: %w", dir, err)
	}
	return func() { unix.Close(fd) }, nil
}

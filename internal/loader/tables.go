package loader

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// Sizes of the table maps in bpf/classify.h. Every table exists once per generation.
const (
	tableGens      = 2
	nodesPerGen    = 4096
	effectsPerGen  = 512
	patternsPerGen = 512
	rulesPerGen    = 4
	entriesPerGen  = 4
	lexiconEntries = 32768 // both generations together
)

// TableMaps are the classifier's table maps (bpf/classify.h). Every BPF object that includes
// classify.h declares them under the same names, so the exec hook and the test wrapper are
// filled the same way.
type TableMaps struct {
	Lexicon  *ebpf.Map // "lexicon"
	Nodes    *ebpf.Map // "nodes"
	Effects  *ebpf.Map // "effects"
	Patterns *ebpf.Map // "patterns"
	Rules    *ebpf.Map // "rules"
	Entries  *ebpf.Map // "entries"
	Gen      *ebpf.Map // "table_gen": the live generation
}

// TableMapsFrom picks the table maps out of a loaded collection.
func TableMapsFrom(coll *ebpf.Collection) (TableMaps, error) {
	var m TableMaps
	for name, p := range map[string]**ebpf.Map{
		"lexicon": &m.Lexicon, "nodes": &m.Nodes, "effects": &m.Effects, "patterns": &m.Patterns,
		"rules": &m.Rules, "entries": &m.Entries, "table_gen": &m.Gen,
	} {
		mp, ok := coll.Maps[name]
		if !ok {
			return TableMaps{}, fmt.Errorf("classifier table map %q missing from the collection", name)
		}
		*p = mp
	}
	return m, nil
}

// writeMu serializes WriteTables within this process: two writers would both pick the same
// inactive generation.
var writeMu sync.Mutex

// ErrTablesTooLarge means the compiled tables do not fit the BPF maps.
var ErrTablesTooLarge = errors.New("classifier tables do not fit the BPF maps")

// WriteTables makes t the tables of the BPF classifier, atomically for the classifier:
//
//  1. it writes t into the generation that is not live (the lexicon keys of that generation
//     are deleted first, then the new ones inserted; the arrays are overwritten in full);
//  2. it flips "table_gen" with one map update. A classification reads table_gen once, at
//     its start, so it sees either the old tables or the new ones, never a mix;
//  3. it waits for an RCU grace period (membarrier(MEMBARRIER_CMD_GLOBAL) runs
//     synchronize_rcu; BPF tracing programs run inside RCU read-side sections), so that no
//     classification that began on the old generation is still running when the next
//     WriteTables overwrites it.
//
// What is not atomic: the maps themselves. Another process writing the same maps at the same
// time, or a reader of the maps from userspace during step 1, sees the inactive generation
// half written. WriteTables calls in this process are serialized.
func WriteTables(m TableMaps, t *policy.Tables) error {
	if err := checkTables(t); err != nil {
		return err
	}
	writeMu.Lock()
	defer writeMu.Unlock()

	var live uint32
	if err := m.Gen.Lookup(uint32(0), &live); err != nil {
		return fmt.Errorf("read live table generation: %w", err)
	}
	next := (live & 1) ^ 1
	if err := writeGeneration(m, t, next); err != nil {
		return fmt.Errorf("write table generation %d: %w", next, err)
	}
	if err := m.Gen.Put(uint32(0), next); err != nil {
		return fmt.Errorf("switch to table generation %d: %w", next, err)
	}
	waitForReaders()
	return nil
}

func writeGeneration(m TableMaps, t *policy.Tables, gen uint32) error {
	nodeBase := gen * nodesPerGen

	// The lexicon is shared by both generations; its keys carry the absolute node id.
	var stale []policy.LexKey
	var k policy.LexKey
	var v policy.LexVal
	it := m.Lexicon.Iterate()
	for it.Next(&k, &v) {
		if uint32(k.Node)/nodesPerGen == gen {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list lexicon: %w", err)
	}
	for _, k := range stale {
		if err := m.Lexicon.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete stale lexicon entry: %w", err)
		}
	}
	for k, v := range t.Lexicon {
		k.Node += uint16(nodeBase)
		if err := m.Lexicon.Put(&k, &v); err != nil {
			return fmt.Errorf("write lexicon entry %q at node %d: %w", k.Name[:k.Len], k.Node-uint16(nodeBase), err)
		}
	}

	if err := putArray(m.Nodes, "nodes", nodeBase, nodesPerGen, t.Nodes); err != nil {
		return err
	}
	if err := putArray(m.Effects, "effects", gen*effectsPerGen, effectsPerGen, t.Effects); err != nil {
		return err
	}
	if err := putArray(m.Patterns, "patterns", gen*patternsPerGen, patternsPerGen, t.Patterns); err != nil {
		return err
	}
	if err := putArray(m.Rules, "rules", gen*rulesPerGen, rulesPerGen, t.Rules[:]); err != nil {
		return err
	}
	return putArray(m.Entries, "entries", gen*entriesPerGen, entriesPerGen, t.Entries[:])
}

// putArray writes vals at base.., and zero values up to base+size, so nothing of an older
// table survives.
func putArray[T any](m *ebpf.Map, name string, base, size uint32, vals []T) error {
	var zero T
	for i := uint32(0); i < size; i++ {
		v := zero
		if int(i) < len(vals) {
			v = vals[i]
		}
		if err := m.Put(base+i, &v); err != nil {
			return fmt.Errorf("write %s[%d]: %w", name, i, err)
		}
	}
	return nil
}

const membarrierCmdGlobal = 1 // MEMBARRIER_CMD_GLOBAL

// waitForReaders waits until every BPF program that was running has finished.
func waitForReaders() {
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		// nohz_full kernels refuse MEMBARRIER_CMD_GLOBAL. A classification takes
		// microseconds; this is many times that.
		time.Sleep(100 * time.Millisecond)
	}
}

// checkTables rejects tables that the BPF interpreter would read differently from the Go one.
func checkTables(t *policy.Tables) error {
	switch {
	case len(t.Nodes) > nodesPerGen:
		return fmt.Errorf("%w: %d nodes, at most %d", ErrTablesTooLarge, len(t.Nodes), nodesPerGen)
	case len(t.Effects) > effectsPerGen:
		return fmt.Errorf("%w: %d effects, at most %d", ErrTablesTooLarge, len(t.Effects), effectsPerGen)
	case len(t.Patterns) > patternsPerGen:
		return fmt.Errorf("%w: %d patterns, at most %d", ErrTablesTooLarge, len(t.Patterns), patternsPerGen)
	case len(t.Lexicon) > lexiconEntries/tableGens:
		return fmt.Errorf("%w: %d lexicon entries, at most %d", ErrTablesTooLarge, len(t.Lexicon), lexiconEntries/tableGens)
	}
	for b, e := range t.Entries {
		if int(e) >= len(t.Nodes) {
			return fmt.Errorf("entry of %v is node %d of %d", policy.Binary(b), e, len(t.Nodes))
		}
	}
	for i, n := range t.Nodes {
		if int(n.LeafEffect) >= len(t.Effects) {
			return fmt.Errorf("node %d: leaf effect %d of %d", i, n.LeafEffect, len(t.Effects))
		}
	}
	for i, e := range t.Effects {
		if int(e.Pat)+int(e.NPat) > len(t.Patterns) {
			return fmt.Errorf("effect %d: patterns %d+%d of %d", i, e.Pat, e.NPat, len(t.Patterns))
		}
		if e.Rule >= uint8(policy.NumRules) {
			return fmt.Errorf("effect %d: rule %d", i, e.Rule)
		}
	}
	for i, p := range t.Patterns {
		if int(p.Len) > policy.PatternMax {
			return fmt.Errorf("pattern %d: length %d, at most %d", i, p.Len, policy.PatternMax)
		}
		if p.Kind != policy.PatKey {
			continue
		}
		// The BPF side lowers mount keys to ASCII only (see cls_lower_step).
		for _, c := range p.S[:p.Len] {
			if c >= 0x80 || (c >= 'A' && c <= 'Z') {
				return fmt.Errorf("pattern %d: key pattern %q is not lower-case ASCII", i, p.S[:p.Len])
			}
		}
	}
	for k, v := range t.Lexicon {
		if int(k.Node) >= len(t.Nodes) || k.Len == 0 || k.Len > policy.NameMax {
			return fmt.Errorf("lexicon key %q at node %d: out of range", k.Name[:min(int(k.Len), policy.NameMax)], k.Node)
		}
		limit := len(t.Effects)
		if k.Kind == policy.LexWord {
			limit = len(t.Nodes)
		}
		if int(v.Target) >= limit {
			return fmt.Errorf("lexicon key %q at node %d: target %d of %d", k.Name[:k.Len], k.Node, v.Target, limit)
		}
	}
	return nil
}

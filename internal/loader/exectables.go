package loader

import (
	"github.com/cilium/ebpf"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// writeTables fills the exec hook's classifier maps (declared by bpf/classify.h).
func writeExecTables(coll *ebpf.Collection, t *policy.Tables) error {
	m, err := TableMapsFrom(coll)
	if err != nil {
		return err
	}
	return WriteTables(m, t)
}

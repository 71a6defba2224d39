package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"time"
)

// Prog is one entry of `bpftool prog show --json`.
type Prog struct {
	ID        uint32 `json:"id"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	RunTimeNs uint64 `json:"run_time_ns"` // with kernel.bpf_stats_enabled
	RunCnt    uint64 `json:"run_cnt"`
	Pids      []struct {
		Pid  int    `json:"pid"`
		Comm string `json:"comm"`
	} `json:"pids"` // the processes holding it, where bpftool can tell
}

func (p Prog) String() string { return fmt.Sprintf("%d:%s(%s)", p.ID, p.Name, p.Type) }

// Progs lists the loaded BPF programs with bpftool.
func Progs() ([]Prog, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bpftool", "prog", "show", "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var progs []Prog
	if err := json.Unmarshal(out, &progs); err != nil {
		return nil, fmt.Errorf("decode bpftool output: %w", err)
	}
	return progs, nil
}

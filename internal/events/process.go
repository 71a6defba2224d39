package events

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// Source yields raw ring buffer records (loader.EventReader).
type Source interface {
	Read() ([]byte, error)
}

// Processor turns records into events and gives each trusted-client exec a second opinion.
type Processor struct {
	Tables         *policy.Tables    // the tables the kernel runs
	Clients        map[FileID]string // trusted client paths by identity
	Mode           string            // enforcement mode for the events: "tracepoint" or "lsm"
	UndecidedAllow bool              // UNDECIDED runs (config policy.undecided = "allow")

	// Kill stops a process the kernel let through; nil means KillProcess (pidfd).
	Kill func(pid int, startBoottime uint64) error
	// UserName maps a uid to a name; nil looks it up in the user database (cached).
	UserName func(uid uint32) string
	// ExePath names the executable of a running process; nil reads /proc/PID/exe.
	ExePath func(pid int) string

	policyMu   sync.RWMutex
	prevTables *policy.Tables // the tables before the last SetPolicy
	swapKtime  uint64         // CLOCK_BOOTTIME of the last SetPolicy

	bootOnce  sync.Once
	bootEpoch time.Time // wall clock at CLOCK_BOOTTIME zero
	seq       atomic.Uint64
	stats     counters
	users     sync.Map // uint32 -> string
}

type counters struct {
	records, malformed, dropped, divergences, divergenceKills, killFailures atomic.Uint64
}

// Stats are the processor's counters since start.
type Stats struct {
	Records         uint64 // records read
	Malformed       uint64 // records that failed to decode
	Dropped         uint64 // events not delivered because the consumer was slow
	Divergences     uint64 // kernel and Go disagreed
	DivergenceKills uint64 // processes killed from userspace after a divergence
	KillFailures    uint64 // divergence kills that failed (process gone or recycled)
}

// SetPolicy switches the tables, trusted clients and undecided handling after a reload. The
// kernel flips its tables at about the same moment; an exec record from before the switch that
// agrees with the previous tables is no divergence.
func (p *Processor) SetPolicy(t *policy.Tables, clients map[FileID]string, undecidedAllow bool) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	p.policyMu.Lock()
	defer p.policyMu.Unlock()
	p.prevTables = p.Tables
	p.swapKtime = uint64(ts.Nano())
	p.Tables, p.Clients, p.UndecidedAllow = t, clients, undecidedAllow
}

type policySnapshot struct {
	tables, prev   *policy.Tables
	swapKtime      uint64
	clients        map[FileID]string
	undecidedAllow bool
}

func (p *Processor) policy() policySnapshot {
	p.policyMu.RLock()
	defer p.policyMu.RUnlock()
	return policySnapshot{p.Tables, p.prevTables, p.swapKtime, p.Clients, p.UndecidedAllow}
}

// Stats returns a snapshot of the counters.
func (p *Processor) Stats() Stats {
	return Stats{
		Records: p.stats.records.Load(), Malformed: p.stats.malformed.Load(), Dropped: p.stats.dropped.Load(),
		Divergences: p.stats.divergences.Load(), DivergenceKills: p.stats.divergenceKills.Load(),
		KillFailures: p.stats.killFailures.Load(),
	}
}

// Run reads records until src fails and delivers events to out without ever waiting for the
// consumer: a full channel drops the event and counts it, so the ring buffer keeps draining and
// divergence kills are never delayed. It returns src's error.
func (p *Processor) Run(src Source, out chan<- Event) error {
	for {
		raw, err := src.Read()
		if err != nil {
			return err
		}
		for _, ev := range p.Handle(raw) {
			select {
			case out <- ev:
			default:
				p.stats.dropped.Add(1)
			}
		}
	}
}

// Handle processes one record: the exec or connect event, plus a divergence event when Go
// disagrees with the kernel. A malformed record becomes a daemon event.
func (p *Processor) Handle(raw []byte) []Event {
	p.stats.records.Add(1)
	r, err := Decode(raw)
	if err != nil {
		p.stats.malformed.Add(1)
		return []Event{p.Daemon(fmt.Sprintf("dropped a kernel record: %v", err))}
	}
	switch r.Kind {
	case RecordExec:
		return p.exec(r)
	case RecordTamper:
		return []Event{p.tamper(r)}
	default:
		return []Event{p.connect(r)}
	}
}

// Daemon makes a daemon event.
func (p *Processor) Daemon(msg string) Event {
	return Event{V: SchemaVersion, Time: time.Now().UTC(), Seq: p.seq.Add(1), Kind: KindDaemon,
		Action: ActionNone, Mode: p.Mode, Message: msg}
}

func (p *Processor) base(r Record, kind string) Event {
	return Event{
		V: SchemaVersion, Time: p.wallTime(r.KtimeNs), Seq: p.seq.Add(1), Kind: kind,
		Action: kernelAction(r.Action), Pid: int(r.Tgid), Ppid: int(r.Ppid), UID: u32p(r.UID),
		User: p.userName(r.UID), Mode: p.Mode,
	}
}

func kernelAction(a uint8) string {
	switch a {
	case KernelKilled:
		return ActionKilled
	case KernelDenied:
		return ActionDenied
	}
	return ActionNone
}

func verdictName(v policy.Verdict) string {
	if v == 0 {
		return "none"
	}
	return v.String()
}

func (p *Processor) exec(r Record) []Event {
	pol := p.policy()
	ev := p.base(r, KindExec)
	ev.Verdict = verdictName(r.Verdict)
	ev.Argv = r.Argv
	ev.ArgvTruncated = r.Flags&FlagArgvTruncated != 0
	ev.Exe = pol.clients[r.Exe]
	if ev.Exe == "" {
		ev.Exe = fmt.Sprintf("dev %d:%d ino %d", r.Exe.Dev>>20, r.Exe.Dev&(1<<20-1), r.Exe.Ino)
	}
	if r.Flags&FlagSetgidExec != 0 {
		return []Event{p.setgidExec(r, ev)}
	}
	if r.Bin == BinNone {
		return []Event{ev}
	}
	bin := policy.Binary(r.Bin)
	ev.Binary = bin.String()
	if r.Flags&FlagTamperedEnv != 0 {
		return []Event{p.tamperedEnv(r, ev, pol.tables)}
	}
	if r.Flags&FlagPtraced != 0 {
		ev.Rule = "ptraced"
		ev.Reason = "a trusted client was being traced at exec"
		return []Event{ev}
	}
	tables := pol.tables
	if tables == nil {
		return []Event{ev}
	}
	// A record from before a reload whose result the previous tables give was classified by
	// them: explain and judge it with those.
	if pol.prev != nil && r.KtimeNs < pol.swapKtime && !ev.ArgvTruncated &&
		tables.Eval(bin, r.Argv) != r.Result && pol.prev.Eval(bin, r.Argv) == r.Result {
		tables = pol.prev
	}
	d := tables.Explain(bin, r.Argv, r.Result)
	ev.Rule, ev.Command, ev.Reason = d.Rule.String(), d.Command, d.Reason

	// Second opinion. A truncated argv is not the whole argv, so Go cannot judge it.
	if ev.ArgvTruncated {
		return []Event{ev}
	}
	goRes := tables.Eval(bin, r.Argv)
	if goRes == r.Result {
		return []Event{ev}
	}
	p.stats.divergences.Add(1)
	div := p.base(r, KindDivergence)
	gd := tables.Explain(bin, r.Argv, goRes)
	div.Verdict, div.Rule, div.Command = goRes.Verdict.String(), gd.Rule.String(), gd.Command
	div.Kernel = verdictName(r.Verdict)
	div.Argv, div.Exe, div.Binary = ev.Argv, ev.Exe, ev.Binary
	div.Action = ActionNone
	div.Reason = fmt.Sprintf("kernel result %+v, Go result %+v: %s", r.Result, goRes, gd.Reason)
	if r.Action != KernelKilled && p.mustDie(goRes.Verdict, pol.undecidedAllow) {
		if err := p.kill(int(r.Tgid), r.StartBoottime); err != nil {
			p.stats.killFailures.Add(1)
			div.Reason += fmt.Sprintf("; kill failed: %v", err)
		} else {
			p.stats.divergenceKills.Add(1)
			div.Action = ActionKilled
		}
	}
	return []Event{ev, div}
}

func (p *Processor) mustDie(v policy.Verdict, undecidedAllow bool) bool {
	return v == policy.VerdictBlock || (v == policy.VerdictUndecided && !undecidedAllow)
}

func (p *Processor) connect(r Record) Event {
	ev := p.base(r, KindConnect)
	ev.Verdict = verdictName(r.Verdict)
	ev.Rule = "protected-socket"
	ev.Socket = r.Path
	if r.Flags&FlagPostConnect != 0 {
		ev.Socket = fmt.Sprintf("dev %d:%d ino %d", r.Sock.Dev>>20, r.Sock.Dev&(1<<20-1), r.Sock.Ino)
	}
	ev.Exe = p.policy().clients[r.Exe]
	if ev.Exe == "" {
		ev.Exe = p.exePath(int(r.Tgid))
	}
	if ev.Exe == "" && r.Exe.Ino != 0 {
		ev.Exe = fmt.Sprintf("dev %d:%d ino %d", r.Exe.Dev>>20, r.Exe.Dev&(1<<20-1), r.Exe.Ino)
	}
	switch {
	case r.Flags&FlagAudit != 0:
		ev.Reason = "audit only: a process without an allowed docker command used a protected socket"
	case r.Flags&FlagPostConnect != 0:
		ev.Reason = "reached a protected socket by another path (symlink, hard link, /proc/PID/root or relative path)"
	case r.Flags&FlagEnterCheck != 0:
		ev.Reason = "connect to a protected socket without an allowed docker command"
	default:
		ev.Reason = "connect to a protected socket without an allowed docker command"
	}
	return ev
}

func (p *Processor) kill(pid int, start uint64) error {
	if p.Kill != nil {
		return p.Kill(pid, start)
	}
	return KillProcess(pid, start)
}

func (p *Processor) userName(uid uint32) string {
	if p.UserName != nil {
		return p.UserName(uid)
	}
	if v, ok := p.users.Load(uid); ok {
		return v.(string)
	}
	name := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = u.Username
	}
	p.users.Store(uid, name)
	return name
}

func (p *Processor) exePath(pid int) string {
	if p.ExePath != nil {
		return p.ExePath(pid)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return exe
}

func (p *Processor) wallTime(ktime uint64) time.Time {
	p.bootOnce.Do(func() { p.bootEpoch = BootEpoch() })
	return p.bootEpoch.Add(time.Duration(ktime)).UTC()
}

// BootEpoch is the wall clock time of CLOCK_BOOTTIME zero.
func BootEpoch() time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano()))
}

// ErrRecycled means the pid now belongs to another process than the event's.
var ErrRecycled = errors.New("pid belongs to another process now")

// KillProcess SIGKILLs pid only if it is still the process that started at startBoottime (ns
// since boot). The pidfd pins the process first, so the start-time check and the signal are
// about the same process even if the pid is reused in between.
func KillProcess(pid int, startBoottime uint64) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	ticks, err := procStartTicks(pid)
	if err != nil {
		return err
	}
	// /proc/PID/stat counts in USER_HZ (100 on Linux) ticks of the same boot-time clock.
	if ticks != startBoottime/(uint64(time.Second)/100) {
		return fmt.Errorf("pid %d: %w", pid, ErrRecycled)
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		return fmt.Errorf("pidfd_send_signal %d: %w", pid, err)
	}
	return nil
}

// procStartTicks reads field 22 (starttime) of /proc/PID/stat.
func procStartTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	return parseStartTicks(data)
}

func parseStartTicks(stat []byte) (uint64, error) {
	// comm (field 2) may hold spaces and parentheses: fields restart after the last ')'.
	end := -1
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			end = i
			break
		}
	}
	if end < 0 {
		return 0, errors.New("proc stat: no comm")
	}
	field := 2
	start := -1
	for i := end + 1; i < len(stat); i++ {
		if stat[i] == ' ' {
			field++
			if field == 22 {
				start = i + 1
			} else if field == 23 {
				return strconv.ParseUint(string(stat[start:i]), 10, 64)
			}
		}
	}
	if start >= 0 {
		return strconv.ParseUint(string(stat[start:]), 10, 64)
	}
	return 0, errors.New("proc stat: no starttime field")
}

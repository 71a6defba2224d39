package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// Text is ev on one line, readable at a glance: time, user, verdict, action, command, rule,
// then the argv (or the socket, or the daemon's message).
func Text(ev Event) string {
	user := ev.User
	if user == "" && ev.UID != nil {
		user = strconv.FormatUint(uint64(*ev.UID), 10)
	}
	if user == "" {
		user = "-"
	}
	verdict := ev.Verdict
	if verdict == "" {
		verdict = ev.Kind
	}
	what := ev.Command
	detail := strings.Join(ev.Argv, " ")
	switch ev.Kind {
	case KindConnect:
		what, detail = "connect "+ev.Socket, ev.Exe
	case KindDaemon:
		what, detail = "daemon", ev.Message
	case KindDivergence:
		what = "divergence: " + ev.Command + " (kernel " + ev.Kernel + ")"
	case KindTamper:
		what, detail = "tamper "+ev.Binary, ev.Reason
	}
	if what == "" {
		what = "-"
	}
	rule := ev.Rule
	if rule == "" {
		rule = "-"
	}
	line := fmt.Sprintf("%s  %-12s %-10s %-7s %-22s %-19s %s", ev.Time.Local().Format(time.DateTime), user, verdict,
		ev.Action, what, rule, detail)
	if ev.Pid != 0 {
		line += fmt.Sprintf("  [pid %d]", ev.Pid)
	}
	return strings.TrimRight(line, " ")
}

// Severe events are logged at warning priority: blocks, kills, denials, divergences, tamper.
func Severe(ev Event) bool {
	return ev.Kind == KindDivergence || ev.Kind == KindTamper || ev.Verdict == "block" ||
		ev.Action == ActionKilled || ev.Action == ActionDenied
}

// JournalFields are the structured journald fields of ev.
func JournalFields(ev Event) map[string]string {
	f := map[string]string{
		"DOCKWATCH_KIND":   ev.Kind,
		"DOCKWATCH_ACTION": ev.Action,
		"DOCKWATCH_SEQ":    strconv.FormatUint(ev.Seq, 10),
	}
	set := func(k, v string) {
		if v != "" {
			f[k] = v
		}
	}
	set("DOCKWATCH_VERDICT", ev.Verdict)
	set("DOCKWATCH_RULE", ev.Rule)
	set("DOCKWATCH_COMMAND", ev.Command)
	set("DOCKWATCH_REASON", ev.Reason)
	set("DOCKWATCH_USER", ev.User)
	set("DOCKWATCH_EXE", ev.Exe)
	set("DOCKWATCH_MODE", ev.Mode)
	set("DOCKWATCH_SOCKET", ev.Socket)
	set("DOCKWATCH_KERNEL_VERDICT", ev.Kernel)
	if len(ev.Argv) > 0 {
		f["DOCKWATCH_ARGV"] = strings.Join(ev.Argv, " ")
	}
	if ev.Pid != 0 {
		f["DOCKWATCH_PID"] = strconv.Itoa(ev.Pid)
		f["DOCKWATCH_PPID"] = strconv.Itoa(ev.Ppid)
	}
	if ev.UID != nil {
		f["DOCKWATCH_UID"] = strconv.FormatUint(uint64(*ev.UID), 10)
	}
	return f
}

// SendJournal writes ev to journald: warning priority for severe events, info otherwise.
func SendJournal(ev Event) error {
	pri := journal.PriInfo
	if Severe(ev) {
		pri = journal.PriWarning
	}
	return journal.Send(Text(ev), pri, JournalFields(ev))
}

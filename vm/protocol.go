package vm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The guest and the host share three things: the manifest the host packs into the initramfs,
// the kernel command line options the guest init reads, and the marker lines the guest writes
// on the results port. They are defined here, once.

// Paths inside the guest.
const (
	GuestManifest = "/dwvm/manifest.json" // the Manifest, JSON
	GuestSuites   = "/dwvm/suites"        // one directory per suite: the binary and its data
	GuestResults  = "/dev/ttyS1"          // second serial port: markers and suite output
	GuestDocker   = "/usr/local/bin/docker"
	GuestFakeAPI  = "/usr/local/bin/fakeapi"
)

// CmdlinePrefix marks the kernel command line options meant for the guest init:
// dwvm.NAME=VALUE becomes the environment variable DWVM_NAME=VALUE of every suite.
const CmdlinePrefix = "dwvm."

// Manifest is what the guest init runs, in order.
type Manifest struct {
	Suites []GuestSuite `json:"suites"`
}

// GuestSuite is one test binary as the guest sees it.
type GuestSuite struct {
	Name       string   `json:"name"`
	Dir        string   `json:"dir"`    // working directory (the package's copy, with testdata)
	Binary     string   `json:"binary"` // absolute path in the guest
	Args       []string `json:"args"`   // after -test.v
	Env        []string `json:"env,omitempty"`
	TimeoutSec int      `json:"timeout_sec"`
	// Configs limits the suite to these matrix configurations (dwvm.config); empty means all.
	Configs []string `json:"configs,omitempty"`
}

// RunsIn reports whether the suite runs in the named configuration.
func (s GuestSuite) RunsIn(config string) bool {
	if len(s.Configs) == 0 {
		return true
	}
	for _, c := range s.Configs {
		if c == config {
			return true
		}
	}
	return false
}

// markerPrefix starts every marker line on the results port. Suite output that happens to
// contain it at the start of a line would confuse the parser; nothing in Go's test output does.
const markerPrefix = "@@dwvm "

// Marker kinds.
const (
	MarkInfo  = "info"  // guest facts: Info
	MarkBegin = "begin" // a suite starts: SuiteEnd with only Suite set
	MarkEnd   = "end"   // a suite ended: SuiteEnd
	MarkDone  = "done"  // every suite ran; the guest powers off next
	MarkError = "error" // the init itself failed: {"error": "..."}
)

// Info is what the guest init reports about the kernel it runs on.
type Info struct {
	Config    string  `json:"config"`     // dwvm.config
	Kernel    string  `json:"kernel"`     // uname -r
	LSM       string  `json:"lsm"`        // /sys/kernel/security/lsm
	Cmdline   string  `json:"cmdline"`    // /proc/cmdline
	UptimeSec float64 `json:"uptime_sec"` // when the init started: the boot time in guest clock
}

// SuiteEnd is the result of one suite.
type SuiteEnd struct {
	Suite   string  `json:"suite"`
	Status  string  `json:"status,omitempty"` // StatusPass, StatusFail or StatusTimeout
	Exit    int     `json:"exit"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"` // the binary could not be started, or similar
}

// Suite statuses.
const (
	StatusPass    = "PASS"
	StatusFail    = "FAIL"
	StatusTimeout = "TIMEOUT"
)

// Marker formats one marker line (with its newline).
func Marker(kind string, v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	return markerPrefix + kind + " " + string(data) + "\n"
}

// Transcript is the parsed results port of one boot.
type Transcript struct {
	Info   *Info
	Suites []SuiteResult
	Errors []string // MarkError payloads
	Done   bool
}

// SuiteResult is one suite's end marker and the output between its begin and end markers.
type SuiteResult struct {
	SuiteEnd
	Output string
	Ended  bool // false when the end marker is missing (the guest died mid-suite)
}

// Suite returns the named suite's result, or nil.
func (t *Transcript) Suite(name string) *SuiteResult {
	for i := range t.Suites {
		if t.Suites[i].Suite == name {
			return &t.Suites[i]
		}
	}
	return nil
}

// ParseTranscript reads the results port. Serial output carries \r\n; both line ends work.
func ParseTranscript(data []byte) (*Transcript, error) {
	t := &Transcript{}
	var cur *SuiteResult
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		rest, ok := strings.CutPrefix(line, markerPrefix)
		if !ok {
			// Kernel messages do not go to this port, so text outside a suite is the init's.
			if cur != nil {
				out.WriteString(line)
				out.WriteByte('\n')
			}
			continue
		}
		kind, payload, _ := strings.Cut(rest, " ")
		switch kind {
		case MarkInfo:
			var info Info
			if err := json.Unmarshal([]byte(payload), &info); err != nil {
				return nil, fmt.Errorf("parse %s marker %q: %w", kind, payload, err)
			}
			t.Info = &info
		case MarkBegin:
			var end SuiteEnd
			if err := json.Unmarshal([]byte(payload), &end); err != nil {
				return nil, fmt.Errorf("parse %s marker %q: %w", kind, payload, err)
			}
			if cur != nil {
				cur.Output = out.String()
			}
			t.Suites = append(t.Suites, SuiteResult{SuiteEnd: SuiteEnd{Suite: end.Suite}})
			cur = &t.Suites[len(t.Suites)-1]
			out.Reset()
		case MarkEnd:
			var end SuiteEnd
			if err := json.Unmarshal([]byte(payload), &end); err != nil {
				return nil, fmt.Errorf("parse %s marker %q: %w", kind, payload, err)
			}
			if cur == nil || cur.Suite != end.Suite {
				return nil, fmt.Errorf("end marker of suite %q without its begin marker", end.Suite)
			}
			cur.SuiteEnd = end
			cur.Output = out.String()
			cur.Ended = true
			cur = nil
			out.Reset()
		case MarkDone:
			t.Done = true
		case MarkError:
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(payload), &e); err != nil {
				e.Error = payload
			}
			t.Errors = append(t.Errors, e.Error)
		default:
			return nil, fmt.Errorf("unknown marker kind %q in line %q", kind, line)
		}
	}
	if cur != nil {
		cur.Output = out.String()
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read transcript: %w", err)
	}
	return t, nil
}

package events

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// Layout of struct event in bpf/dockwatch.h (little endian). internal/loader tests that the
// generated Go type has the same size.
const (
	HeaderSize = 200
	sunPathMax = 108

	offKtime         = 0
	offStartBoottime = 8
	offExeIno        = 16
	offSockIno       = 24
	offKind          = 32
	offPid           = 36
	offTgid          = 40
	offPpid          = 44
	offUID           = 48
	offEUID          = 52
	offExeDev        = 56
	offSockDev       = 60
	offArgvLen       = 64
	offPathLen       = 68
	offBin           = 72
	offVerdict       = 73
	offAction        = 74
	offFlags         = 75
	offResult        = 76 // struct result, 12 bytes
	offPath          = 88
)

// Record kinds (EVENT_* in dockwatch.h).
const (
	RecordExec    uint32 = 1
	RecordConnect uint32 = 2
)

// Kernel actions (ACTION_*).
const (
	KernelNone   uint8 = 0
	KernelKilled uint8 = 1
	KernelDenied uint8 = 2
)

// Record flags (EVENT_F_*).
const (
	FlagArgvTruncated uint8 = 1
	FlagPtraced       uint8 = 2
	FlagPostConnect   uint8 = 4
	FlagEnterCheck    uint8 = 8
	FlagAudit         uint8 = 16
)

// BinNone marks a record of a process that is not a trusted client.
const BinNone uint8 = 0xff

// FileID identifies a file the way the kernel does: s_dev (MAJOR<<20|MINOR) and inode.
type FileID struct {
	Dev uint32
	Ino uint64
}

// Record is one decoded ring buffer record.
type Record struct {
	Kind          uint32
	KtimeNs       uint64 // CLOCK_BOOTTIME
	StartBoottime uint64 // group leader start, ns since boot
	Pid, Tgid     uint32
	Ppid          uint32
	UID, EUID     uint32
	Exe           FileID
	Sock          FileID // connect: the peer socket found by the post-connect check
	Bin           uint8  // policy.Binary, or BinNone
	Verdict       policy.Verdict
	Action        uint8
	Flags         uint8
	Result        policy.Result
	Path          string   // connect: sun_path
	Argv          []string // exec: argv as the new image sees it
	ArgvBytes     int      // exec: bytes of argv in the record
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed event record")

// Decode parses one record. It validates every size and never panics on short or hostile input.
func Decode(raw []byte) (Record, error) {
	var r Record
	if len(raw) < HeaderSize {
		return r, fmt.Errorf("%w: %d bytes, header is %d", ErrMalformed, len(raw), HeaderSize)
	}
	le := binary.LittleEndian
	u32 := func(off int) uint32 { return le.Uint32(raw[off:]) }
	u64 := func(off int) uint64 { return le.Uint64(raw[off:]) }
	r.Kind = u32(offKind)
	r.KtimeNs = u64(offKtime)
	r.StartBoottime = u64(offStartBoottime)
	r.Pid, r.Tgid, r.Ppid = u32(offPid), u32(offTgid), u32(offPpid)
	r.UID, r.EUID = u32(offUID), u32(offEUID)
	r.Exe = FileID{Dev: u32(offExeDev), Ino: u64(offExeIno)}
	r.Sock = FileID{Dev: u32(offSockDev), Ino: u64(offSockIno)}
	r.Bin = raw[offBin]
	r.Verdict = policy.Verdict(raw[offVerdict])
	r.Action = raw[offAction]
	r.Flags = raw[offFlags]
	res := raw[offResult:]
	r.Result = policy.Result{
		Verdict: policy.Verdict(res[0]), Rule: policy.Rule(res[1]), Help: res[2],
		Node: le.Uint16(res[4:]), Effect: le.Uint16(res[6:]), Token: le.Uint16(res[8:]),
	}
	argvLen, pathLen := u32(offArgvLen), u32(offPathLen)

	switch r.Kind {
	case RecordExec, RecordConnect, RecordTamper:
	default:
		return r, fmt.Errorf("%w: unknown kind %d", ErrMalformed, r.Kind)
	}
	if r.Bin != BinNone && policy.Binary(r.Bin) >= policy.NumBinaries {
		return r, fmt.Errorf("%w: binary kind %d", ErrMalformed, r.Bin)
	}
	if r.Action > KernelDenied {
		return r, fmt.Errorf("%w: action %d", ErrMalformed, r.Action)
	}
	if pathLen > sunPathMax {
		return r, fmt.Errorf("%w: path length %d > %d", ErrMalformed, pathLen, sunPathMax)
	}
	if argvLen > policy.MaxArgvBytes || int(argvLen) != len(raw)-HeaderSize {
		return r, fmt.Errorf("%w: argv length %d, record has %d bytes after the header", ErrMalformed, argvLen, len(raw)-HeaderSize)
	}
	if r.Kind != RecordExec && argvLen != 0 {
		return r, fmt.Errorf("%w: kind %d record with %d bytes of argv", ErrMalformed, r.Kind, argvLen)
	}
	r.Path = string(raw[offPath : offPath+int(pathLen)])
	if r.Kind == RecordExec {
		r.ArgvBytes = int(argvLen)
		r.Argv = splitArgv(raw[HeaderSize:])
	}
	return r, nil
}

// splitArgv splits NUL-terminated strings; an unterminated last one (truncated argv) is kept.
func splitArgv(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}

// Encode is the inverse of Decode, for tests and fakes.
func Encode(r Record) []byte {
	var argv []byte
	for _, a := range r.Argv {
		argv = append(argv, a...)
		argv = append(argv, 0)
	}
	buf := make([]byte, HeaderSize+len(argv))
	le := binary.LittleEndian
	le.PutUint64(buf[offKtime:], r.KtimeNs)
	le.PutUint64(buf[offStartBoottime:], r.StartBoottime)
	le.PutUint64(buf[offExeIno:], r.Exe.Ino)
	le.PutUint64(buf[offSockIno:], r.Sock.Ino)
	le.PutUint32(buf[offKind:], r.Kind)
	le.PutUint32(buf[offPid:], r.Pid)
	le.PutUint32(buf[offTgid:], r.Tgid)
	le.PutUint32(buf[offPpid:], r.Ppid)
	le.PutUint32(buf[offUID:], r.UID)
	le.PutUint32(buf[offEUID:], r.EUID)
	le.PutUint32(buf[offExeDev:], r.Exe.Dev)
	le.PutUint32(buf[offSockDev:], r.Sock.Dev)
	le.PutUint32(buf[offArgvLen:], uint32(len(argv)))
	path := r.Path
	if len(path) > sunPathMax {
		path = path[:sunPathMax]
	}
	le.PutUint32(buf[offPathLen:], uint32(len(path)))
	buf[offBin] = r.Bin
	buf[offVerdict] = uint8(r.Verdict)
	buf[offAction] = r.Action
	buf[offFlags] = r.Flags
	res := buf[offResult:]
	res[0], res[1], res[2] = uint8(r.Result.Verdict), uint8(r.Result.Rule), r.Result.Help
	le.PutUint16(res[4:], r.Result.Node)
	le.PutUint16(res[6:], r.Result.Effect)
	le.PutUint16(res[8:], r.Result.Token)
	copy(buf[offPath:], path)
	copy(buf[HeaderSize:], argv)
	return buf
}

package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dockwatch/dockwatch/internal/policy"
)

// Limits on values.
const (
	maxHistory  = 10_000_000
	sunPathMax  = 107 // usable bytes of sockaddr_un.sun_path (108 with the NUL)
	maxListLen  = 1024
	maxNameLen  = 256
	maxDuration = 7 * 24 * time.Hour
)

// valueKind is the TOML type a key must have.
type valueKind int

const (
	kindString valueKind = iota
	kindBool
	kindInt
	kindStrings
	kindDuration
)

func (k valueKind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindBool:
		return "a boolean (true or false)"
	case kindInt:
		return "an integer"
	case kindStrings:
		return "an array of strings"
	case kindDuration:
		return `a duration string such as "5m"`
	}
	return "?"
}

// field is one known key: its type and how a value of that type is checked and stored.
// apply returns the problem with the value as a message (without key or line).
type field struct {
	name  string
	kind  valueKind
	apply func(c *Config, v any) error
}

// sections lists every known section and key, in the order of DESIGN.md §4.
var sections = []struct {
	name   string
	fields []field
}{
	{"supervise", []field{
		{"users", kindStrings, func(c *Config, v any) error {
			return setList(&c.Supervise.Users, v, validUser, true)
		}},
		{"follow_children", kindBool, func(c *Config, v any) error {
			c.Supervise.FollowChildren = v.(bool)
			return nil
		}},
	}},
	{"docker", []field{
		{"sockets", kindStrings, func(c *Config, v any) error {
			if err := setList(&c.Docker.Sockets, v, validSocket, true); err != nil {
				return err
			}
			return noAliasDuplicates(c.Docker.Sockets)
		}},
		{"clients", kindStrings, func(c *Config, v any) error {
			return setList(&c.Docker.Clients, v, validAbsPath, true)
		}},
		{"plugin_dirs", kindStrings, func(c *Config, v any) error {
			return setList(&c.Docker.PluginDirs, v, validAbsPath, false)
		}},
		{"access", kindString, func(c *Config, v any) error {
			return setEnum(&c.Docker.Access, v, accessValues)
		}},
		{"helpers", kindStrings, func(c *Config, v any) error {
			return setList(&c.Docker.Helpers, v, validAbsPath, false)
		}},
	}},
	{"policy", []field{
		{"mode", kindString, func(c *Config, v any) error {
			return setEnum(&c.Policy.Mode, v, modeValues)
		}},
		{"block", kindStrings, func(c *Config, v any) error {
			return setList(&c.Policy.Block, v, validBlockEntry, false)
		}},
		{"escape", kindString, func(c *Config, v any) error {
			return setEnum(&c.Policy.Escape, v, escapeValues)
		}},
		{"unknown", kindString, func(c *Config, v any) error {
			return setEnum(&c.Policy.Unknown, v, unknownValues)
		}},
		{"undecided", kindString, func(c *Config, v any) error {
			return setEnum(&c.Policy.Undecided, v, undecidedValues)
		}},
		{"sensitive_paths", kindStrings, func(c *Config, v any) error {
			return setList(&c.Policy.SensitivePaths, v, validPatternPath, false)
		}},
		{"plugins", kindStrings, func(c *Config, v any) error {
			return setList(&c.Policy.Plugins, v, func(s string) error {
				return checkEnum(s, pluginValues)
			}, false)
		}},
	}},
	{"events", []field{
		{"socket", kindString, func(c *Config, v any) error {
			s := v.(string)
			if err := validSocket(s); err != nil {
				return err
			}
			c.Events.Socket = s
			return nil
		}},
		{"group", kindString, func(c *Config, v any) error {
			s := v.(string)
			if err := validGroup(s); err != nil {
				return err
			}
			c.Events.Group = s
			return nil
		}},
		{"history", kindInt, func(c *Config, v any) error {
			n := v.(int64)
			if n < 0 || n > maxHistory {
				return fmt.Errorf("must be between 0 and %d, got %d", maxHistory, n)
			}
			c.Events.History = int(n)
			return nil
		}},
	}},
	{"alerts", []field{
		{"webhook_url", kindString, func(c *Config, v any) error {
			s := v.(string)
			if err := validWebhookURL(s); err != nil {
				return err
			}
			c.Alerts.WebhookURL = s
			return nil
		}},
		{"webhook_secret_file", kindString, func(c *Config, v any) error {
			s := v.(string)
			if s != "" {
				if err := validAbsPath(s); err != nil {
					return err
				}
			}
			c.Alerts.WebhookSecretFile = s
			return nil
		}},
		{"dedup_window", kindDuration, func(c *Config, v any) error {
			c.Alerts.DedupWindow = Duration(v.(time.Duration))
			return nil
		}},
	}},
	{"metrics", []field{
		{"listen", kindString, func(c *Config, v any) error {
			s := v.(string)
			if err := validListen(s); err != nil {
				return err
			}
			c.Metrics.Listen = s
			return nil
		}},
	}},
	{"kernel", []field{
		{"mode", kindString, func(c *Config, v any) error {
			return setEnum(&c.Kernel.Mode, v, kernelModes)
		}},
	}},
}

func lookupField(section, key string) (*field, bool) {
	for _, s := range sections {
		if s.name != section {
			continue
		}
		for i := range s.fields {
			if s.fields[i].name == key {
				return &s.fields[i], true
			}
		}
		return nil, true
	}
	return nil, false
}

func sectionNames() string {
	var names []string
	for _, s := range sections {
		names = append(names, s.name)
	}
	return strings.Join(names, ", ")
}

func keyNames(section string) string {
	for _, s := range sections {
		if s.name == section {
			var names []string
			for _, f := range s.fields {
				names = append(names, f.name)
			}
			return strings.Join(names, ", ")
		}
	}
	return ""
}

// parser holds the state of one Parse call.
type parser struct {
	file     string
	md       toml.MetaData
	top      map[string]toml.Primitive
	sections map[string]map[string]toml.Primitive
}

// Parse parses and validates a config file's contents. filename is used in error messages only.
// Keys the file does not set keep their Default value.
func Parse(data []byte, filename string) (*Config, error) {
	if filename == "" {
		filename = "config"
	}
	p := &parser{file: filename, sections: map[string]map[string]toml.Primitive{}}
	md, err := toml.Decode(string(data), &p.top)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: filename, Line: pe.Position.Line, Msg: "syntax error: " + pe.Message}
		}
		return nil, &Error{File: filename, Msg: "syntax error: " + err.Error()}
	}
	p.md = md

	c := Default()
	for _, k := range md.Keys() {
		if err := p.key(c, k); err != nil {
			return nil, err
		}
	}
	// Every key was checked above; Undecoded is the safety net for anything nested deeper.
	if u := md.Undecoded(); len(u) > 0 {
		return nil, p.errorf(u[0], "unknown key")
	}
	if err := p.crossCheck(c); err != nil {
		return nil, err
	}
	return c, nil
}

// key checks one key of the document (in document order) and applies its value.
func (p *parser) key(c *Config, k toml.Key) error {
	section := k[0]
	if _, known := lookupField(section, ""); !known {
		return p.errorf(k[:1], "unknown section [%s] (known: %s)", section, sectionNames())
	}
	if len(k) == 1 {
		switch t := p.md.Type(section); t {
		case "Hash", "":
			return nil
		default:
			return p.errorf(k, "must be a table ([%s]), got %s", section, tomlTypeName(t))
		}
	}
	f, _ := lookupField(section, k[1])
	if f == nil || len(k) > 2 {
		if f == nil {
			return p.errorf(k, "unknown key (known in [%s]: %s)", section, keyNames(section))
		}
		return p.errorf(k, "unknown key")
	}
	prim, err := p.primitive(section, k[1])
	if err != nil {
		return p.errorf(k, "%v", err)
	}
	v, err := p.decode(k, f.kind, prim)
	if err != nil {
		return p.errorf(k, "%v", err)
	}
	if err := f.apply(c, v); err != nil {
		return p.errorf(k, "%v", err)
	}
	return nil
}

// primitive returns the undecoded value of section.key.
func (p *parser) primitive(section, key string) (toml.Primitive, error) {
	m, ok := p.sections[section]
	if !ok {
		m = map[string]toml.Primitive{}
		if err := p.md.PrimitiveDecode(p.top[section], &m); err != nil {
			return toml.Primitive{}, fmt.Errorf("decode section: %w", err)
		}
		p.sections[section] = m
	}
	prim, ok := m[key]
	if !ok {
		return toml.Primitive{}, fmt.Errorf("value not found")
	}
	return prim, nil
}

// decode checks the TOML type of key k and decodes it into the Go type of kind.
func (p *parser) decode(k toml.Key, kind valueKind, prim toml.Primitive) (any, error) {
	t := p.md.Type(k...)
	wrong := fmt.Errorf("must be %s, got %s", kind, tomlTypeName(t))
	switch kind {
	case kindString, kindDuration:
		if t != "String" {
			return nil, wrong
		}
		var s string
		if err := p.md.PrimitiveDecode(prim, &s); err != nil {
			return nil, wrong
		}
		if kind == kindString {
			return s, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxDuration {
			return nil, fmt.Errorf("must be a duration between 0s and %s such as \"5m\", got %q", maxDuration, s)
		}
		return d, nil
	case kindBool:
		var b bool
		if t != "Bool" || p.md.PrimitiveDecode(prim, &b) != nil {
			return nil, wrong
		}
		return b, nil
	case kindInt:
		var n int64
		if t != "Integer" || p.md.PrimitiveDecode(prim, &n) != nil {
			return nil, wrong
		}
		return n, nil
	case kindStrings:
		var elems []any
		if t != "Array" || p.md.PrimitiveDecode(prim, &elems) != nil {
			return nil, wrong
		}
		if len(elems) > maxListLen {
			return nil, fmt.Errorf("too many entries (%d, at most %d)", len(elems), maxListLen)
		}
		out := make([]string, 0, len(elems))
		for i, e := range elems {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("must be %s, entry %d is %s", kind, i+1, goTypeName(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported kind %d", kind)
}

// crossCheck validates what depends on more than one key, and compiles the policy so that a
// block entry the classifier does not know is an error here, not at start-up.
func (p *parser) crossCheck(c *Config) error {
	if c.Alerts.WebhookSecretFile != "" && c.Alerts.WebhookURL == "" {
		return p.errorf(toml.Key{"alerts", "webhook_secret_file"}, "is set but alerts.webhook_url is empty")
	}
	for _, s := range c.Docker.Sockets {
		if len(s) > policy.PatternMax {
			// The socket becomes a sensitive bind-mount path, stored in a fixed-size pattern.
			return p.errorf(toml.Key{"docker", "sockets"}, "%q is longer than %d bytes", s, policy.PatternMax)
		}
	}
	if _, err := policy.Compile(c.ClassifierPolicy()); err != nil {
		if errors.Is(err, policy.ErrPolicy) {
			return p.errorf(toml.Key{"policy", "block"}, "%v", err)
		}
		return p.errorf(toml.Key{"policy"}, "compile: %v", err)
	}
	return nil
}

// errorf builds an Error at key k, with the line of k when the document defines it.
func (p *parser) errorf(k toml.Key, format string, args ...any) error {
	return &Error{File: p.file, Line: p.line(k), Key: k.String(), Msg: fmt.Sprintf(format, args...)}
}

// lineProbe makes the toml decoder report the position of the key it is decoded at: its
// UnmarshalTOML always fails, and the decoder wraps that failure in a ParseError that carries
// the key's position. MetaData has no other public way to get a key's line.
type lineProbe struct{}

var errProbe = errors.New("line probe")

func (lineProbe) UnmarshalTOML(any) error { return errProbe }

// line returns the line where key k is defined. A table that is only implied by dotted keys
// ("a.b = 1") has no line of its own; it gets the line of the first key under it. 0 means the key
// is not in the document.
func (p *parser) line(k toml.Key) int {
	if n := p.probeLine(k); n > 0 {
		return n
	}
	for _, key := range p.md.Keys() {
		if len(key) > len(k) && slices.Equal(key[:len(k)], k) {
			if n := p.probeLine(key); n > 0 {
				return n
			}
		}
	}
	return 0
}

// probeLine decodes the value at k (walking down through tables) into a lineProbe.
func (p *parser) probeLine(k toml.Key) int {
	if len(k) == 0 || !p.md.IsDefined(k...) {
		return 0
	}
	prim, ok := p.top[k[0]]
	for _, name := range k[1:] {
		m := map[string]toml.Primitive{}
		if !ok || p.md.PrimitiveDecode(prim, &m) != nil {
			return 0
		}
		prim, ok = m[name]
	}
	if !ok {
		return 0
	}
	var pe toml.ParseError
	if err := p.md.PrimitiveDecode(prim, lineProbe{}); errors.As(err, &pe) {
		return pe.Position.Line
	}
	return 0
}

func tomlTypeName(t string) string {
	switch t {
	case "Integer":
		return "an integer"
	case "Float":
		return "a float"
	case "Datetime":
		return "a date-time"
	case "String":
		return "a string"
	case "Bool":
		return "a boolean"
	case "Array":
		return "an array"
	case "Hash":
		return "a table"
	case "ArrayHash":
		return "an array of tables"
	}
	return "a value of unknown type"
}

func goTypeName(v any) string {
	switch v.(type) {
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	}
	return fmt.Sprintf("a %T", v)
}

// setList validates every entry of a string list, rejects duplicates and (when nonEmpty) an
// empty list, then stores it.
func setList(dst *[]string, v any, valid func(string) error, nonEmpty bool) error {
	list := v.([]string)
	if nonEmpty && len(list) == 0 {
		return errors.New("must not be empty")
	}
	for i, s := range list {
		if err := valid(s); err != nil {
			return fmt.Errorf("entry %d: %w", i+1, err)
		}
		if j := slices.Index(list[:i], s); j >= 0 {
			return fmt.Errorf("entry %d: duplicate of entry %d (%q)", i+1, j+1, s)
		}
	}
	*dst = list
	return nil
}

func setEnum(dst *string, v any, values []string) error {
	s := v.(string)
	if err := checkEnum(s, values); err != nil {
		return err
	}
	*dst = s
	return nil
}

func checkEnum(s string, values []string) error {
	if slices.Contains(values, s) {
		return nil
	}
	return fmt.Errorf("must be one of %s, got %q", strings.Join(values, ", "), s)
}

// userName is what useradd accepts by default, plus upper case and dots (other distributions).
var userName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*\$?$`)

// validUser accepts a user name or a numeric UID. root is refused: a supervised root could
// unload dockwatch, and supervising it would put the daemon itself under its own gate.
func validUser(s string) error {
	if s == "" {
		return errors.New("empty user name")
	}
	if s[0] >= '0' && s[0] <= '9' {
		uid, err := strconv.ParseUint(s, 10, 32)
		if err != nil || uid == 1<<32-1 {
			return fmt.Errorf("%q is neither a user name nor a valid numeric UID", s)
		}
		if uid == 0 {
			return errors.New("root (UID 0) cannot be supervised")
		}
		return nil
	}
	if len(s) > 32 || !userName.MatchString(s) {
		return fmt.Errorf("%q is not a valid user name", s)
	}
	if s == "root" {
		return errors.New("root (UID 0) cannot be supervised")
	}
	return nil
}

func validGroup(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if s[0] >= '0' && s[0] <= '9' {
		if gid, err := strconv.ParseUint(s, 10, 32); err != nil || gid == 1<<32-1 {
			return fmt.Errorf("%q is neither a group name nor a valid numeric GID", s)
		}
		return nil
	}
	if len(s) > 32 || !userName.MatchString(s) {
		return fmt.Errorf("%q is not a valid group name", s)
	}
	return nil
}

// validAbsPath accepts an absolute, clean path ("/usr/bin/docker", not "bin/docker" or
// "/usr//bin/docker"). The daemon compares paths byte for byte, so they must be canonical.
func validAbsPath(s string) error {
	switch {
	case s == "":
		return errors.New("empty path")
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%q contains a NUL byte", s)
	case !strings.HasPrefix(s, "/"):
		return fmt.Errorf("%q is not an absolute path", s)
	case len(s) > 4095:
		return fmt.Errorf("path is longer than 4095 bytes")
	case path.Clean(s) != s:
		return fmt.Errorf("%q is not a clean path (use %q)", s, path.Clean(s))
	}
	return nil
}

func validSocket(s string) error {
	if err := validAbsPath(s); err != nil {
		return err
	}
	if s == "/" {
		return errors.New(`"/" is not a socket path`)
	}
	if len(s) > sunPathMax {
		return fmt.Errorf("%q is longer than %d bytes, the limit of a unix socket path", s, sunPathMax)
	}
	return nil
}

// noAliasDuplicates rejects listing a socket under both /run and /var/run: the alias is implied.
func noAliasDuplicates(sockets []string) error {
	for i, s := range sockets {
		for _, a := range SocketAliases(s)[1:] {
			if j := slices.Index(sockets[:i], a); j >= 0 {
				return fmt.Errorf("entry %d: %q is entry %d under its other name; the /run <-> /var/run alias is implied", i+1, s, j+1)
			}
		}
	}
	return nil
}

// validPatternPath accepts an absolute clean path that fits in one classifier pattern.
func validPatternPath(s string) error {
	if err := validAbsPath(s); err != nil {
		return err
	}
	if s == "/" {
		return errors.New(`"/" is always sensitive; list paths below it`)
	}
	if len(s) > policy.PatternMax {
		return fmt.Errorf("%q is longer than %d bytes", s, policy.PatternMax)
	}
	return nil
}

// validBlockEntry checks the shape of a block entry; whether the classifier knows it is
// checked by compiling the policy.
func validBlockEntry(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty entry")
	}
	if strings.TrimSpace(s) != s || strings.Contains(s, "  ") {
		return fmt.Errorf("%q has stray spaces (write words separated by one space, e.g. \"system prune\")", s)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("entry is longer than %d bytes", maxNameLen)
	}
	return nil
}

func validWebhookURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a valid URL", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("must be an http:// or https:// URL, got %q", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}

// validListen accepts "" (metrics off) or host:port with a numeric port.
func validListen(s string) error {
	if s == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port (e.g. \"127.0.0.1:9477\"), got %q", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port must be a number from 1 to 65535, got %q", port)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return fmt.Errorf("%q is not an IP address or host name", host)
	}
	return nil
}

var hostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

func validHostname(s string) bool { return len(s) <= 253 && hostname.MatchString(s) }

package vm

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// cpioEntry is one parsed newc record.
type cpioEntry struct {
	name         string
	mode         uint32
	rmajor, rmin uint32
	data         []byte
}

// readNewc parses a newc archive the way the kernel's initramfs unpacker does.
func readNewc(t *testing.T, data []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header field %d at %d: %v", i, off, err)
		}
		return uint32(v)
	}
	for {
		if off+110 > len(data) {
			t.Fatalf("archive ends inside a header at %d", off)
		}
		if magic := string(data[off : off+6]); magic != "070701" {
			t.Fatalf("magic %q at %d", magic, off)
		}
		e := cpioEntry{mode: field(1), rmajor: field(9), rmin: field(10)}
		size, namesize := int(field(6)), int(field(11))
		off += 110
		e.name = string(data[off : off+namesize-1])
		off += namesize
		align()
		e.data = data[off : off+size]
		off += size
		align()
		if e.name == "TRAILER!!!" {
			if off != len(data) {
				t.Fatalf("%d bytes after the trailer", len(data)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestArchiveNewc(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "hello")
	if err := os.WriteFile(host, []byte("hello, guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "sub", "x.tsv"), []byte("a\tb\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	a := NewArchive()
	steps := []error{
		a.File("/usr/local/bin/hello", host, 0o755),
		a.Bytes("/etc/passwd", []byte("root:x:0:0::/root:/bin/sh\n"), 0o644),
		a.Symlink("/bin/sh", "/bin/busybox"),
		a.CharDev("/dev/console", 0o600, 5, 1),
		a.Tree("/suite/testdata", tree),
		a.Bytes("/odd", []byte("12345"), 0o644), // forces padding after the data
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	var buf bytes.Buffer
	if err := a.WriteGzip(&buf); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	entries := readNewc(t, raw)
	byName := map[string]cpioEntry{}
	var order []string
	for _, e := range entries {
		byName[e.name] = e
		order = append(order, e.name)
	}
	for i, name := range order {
		if parent := filepath.Dir(name); parent != "." && !slices.Contains(order[:i], parent) {
			t.Errorf("%s comes before its directory %s", name, parent)
		}
	}
	want := []struct {
		name string
		mode uint32
		data string
	}{
		{"usr/local/bin/hello", 0o100755, "hello, guest\n"},
		{"usr/local/bin", 0o040755, ""},
		{"etc/passwd", 0o100644, "root:x:0:0::/root:/bin/sh\n"},
		{"bin/sh", 0o120777, "/bin/busybox"},
		{"dev/console", 0o020600, ""},
		{"suite/testdata/sub", 0o040755, ""},
		{"suite/testdata/sub/x.tsv", 0o100600, "a\tb\n"},
		{"odd", 0o100644, "12345"},
	}
	for _, w := range want {
		e, ok := byName[w.name]
		if !ok {
			t.Errorf("%s missing; archive has %v", w.name, order)
			continue
		}
		if e.mode != w.mode || string(e.data) != w.data {
			t.Errorf("%s: mode %o data %q, want %o %q", w.name, e.mode, e.data, w.mode, w.data)
		}
	}
	if c := byName["dev/console"]; c.rmajor != 5 || c.rmin != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.rmajor, c.rmin)
	}

	// A second implementation agrees, where one is installed.
	if busybox, err := exec.LookPath("busybox"); err == nil {
		cmd := exec.Command(busybox, "cpio", "-t")
		cmd.Stdin = bytes.NewReader(raw)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr // "N blocks"
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("busybox cpio -t: %v\n%s", err, stderr.Bytes())
		}
		listed := strings.Fields(string(out))
		if !slices.Equal(listed, order) {
			t.Errorf("busybox cpio lists %v, want %v", listed, order)
		}
	}
}

func TestArchiveRejects(t *testing.T) {
	a := NewArchive()
	if err := a.Bytes("relative", nil, 0o644); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Errorf("relative path: %v", err)
	}
	if err := a.Bytes("/f", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Bytes("/f/g", nil, 0o644); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file below a file: %v", err)
	}
	if err := a.File("/x", filepath.Join(t.TempDir(), "missing"), 0o644); err == nil {
		t.Errorf("missing host file: no error")
	}
}

func TestParseTranscript(t *testing.T) {
	// Serial ports turn \n into \r\n.
	text := strings.ReplaceAll(
		Marker(MarkInfo, Info{Config: "6.1-lsm", Kernel: "6.1.0-56-cloud-amd64", LSM: "lockdown,bpf", UptimeSec: 4.2})+
			Marker(MarkBegin, SuiteEnd{Suite: "policy"})+
			"=== RUN   TestCorpus\n--- PASS: TestCorpus (0.00s)\nPASS\n"+
			Marker(MarkEnd, SuiteEnd{Suite: "policy", Status: StatusPass, Seconds: 2.5})+
			Marker(MarkBegin, SuiteEnd{Suite: "probe"})+
			"--- SKIP: TestX (0.00s)\n    x_test.go:1: no thing\n"+
			Marker(MarkEnd, SuiteEnd{Suite: "probe", Status: StatusFail, Exit: 1})+
			Marker(MarkBegin, SuiteEnd{Suite: "loader"})+
			"=== RUN   TestLoad\n", // the guest died here
		"\n", "\r\n")
	tr, err := ParseTranscript([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Info == nil || tr.Info.Config != "6.1-lsm" || tr.Info.UptimeSec != 4.2 {
		t.Errorf("info = %+v", tr.Info)
	}
	if tr.Done {
		t.Errorf("done without a done marker")
	}
	if len(tr.Suites) != 3 {
		t.Fatalf("suites = %+v", tr.Suites)
	}
	policy := tr.Suite("policy")
	if !policy.Ended || policy.Status != StatusPass || !strings.Contains(policy.Output, "--- PASS: TestCorpus") || strings.Contains(policy.Output, "\r") {
		t.Errorf("policy = %+v", policy)
	}
	if probe := tr.Suite("probe"); !probe.Ended || probe.Exit != 1 || probe.Status != StatusFail {
		t.Errorf("probe = %+v", probe)
	}
	if loader := tr.Suite("loader"); loader.Ended || loader.Output != "=== RUN   TestLoad\n" {
		t.Errorf("loader = %+v", loader)
	}

	b := &Boot{Machine: Machine{Name: "6.1-lsm"}, Transcript: tr,
		Console: []byte("[    1.0] BUG: kernel NULL pointer dereference\n")}
	problems := strings.Join(b.Check(Expect{Suites: []string{"policy", "probe", "loader"}, BPFLSM: true}), "\n")
	for _, want := range []string{"BUG: kernel NULL", "suite probe: FAIL (exit 1)", "suite loader: no end marker", "no done marker"} {
		if !strings.Contains(problems, want) {
			t.Errorf("Check misses %q; it says:\n%s", want, problems)
		}
	}
	if strings.Contains(problems, "suite policy") || strings.Contains(problems, "active LSMs") {
		t.Errorf("Check blames what passed:\n%s", problems)
	}
	if skips := b.Skips(); len(skips) != 1 || !strings.Contains(skips[0], "probe: --- SKIP: TestX (0.00s) x_test.go:1: no thing") {
		t.Errorf("skips = %q", skips)
	}
	problems = strings.Join(b.Check(Expect{Suites: []string{"policy"}, BPFLSM: false}), "\n")
	for _, want := range []string{`active LSMs "lockdown,bpf": want bpf present=false`, "suites run: [policy probe loader], want [policy]"} {
		if !strings.Contains(problems, want) {
			t.Errorf("Check misses %q; it says:\n%s", want, problems)
		}
	}

	if _, err := ParseTranscript([]byte(Marker(MarkEnd, SuiteEnd{Suite: "x"}))); err == nil {
		t.Errorf("end without begin: no error")
	}
	if _, err := ParseTranscript([]byte(markerPrefix + "bogus {}\n")); err == nil {
		t.Errorf("unknown marker: no error")
	}
}

func TestSortVersions(t *testing.T) {
	names := []string{
		"linux-image-6.1.0-56-cloud-amd64-unsigned",
		"linux-image-6.1.0-9-cloud-amd64-unsigned",
		"linux-image-6.1.0-47-cloud-amd64-unsigned",
	}
	sortVersions(names)
	if names[0] != "linux-image-6.1.0-9-cloud-amd64-unsigned" || names[2] != "linux-image-6.1.0-56-cloud-amd64-unsigned" {
		t.Errorf("6.1 order: %v", names)
	}
	names = []string{
		"linux-image-6.12.117+deb12-cloud-amd64-unsigned",
		"linux-image-6.12.99+deb12-cloud-amd64-unsigned",
		"linux-image-6.12.107+deb12-cloud-amd64-unsigned",
	}
	sortVersions(names)
	if names[0] != "linux-image-6.12.99+deb12-cloud-amd64-unsigned" || names[2] != "linux-image-6.12.117+deb12-cloud-amd64-unsigned" {
		t.Errorf("6.12 order: %v", names)
	}
	for _, n := range names {
		if !Debian612.Pattern.MatchString(n) || Debian61.Pattern.MatchString(n) {
			t.Errorf("%s: patterns disagree", n)
		}
	}
	if Debian612.Pattern.MatchString("linux-image-6.12.117+deb12-cloud-amd64") {
		t.Errorf("the signed package matches; only -unsigned should")
	}
}

func TestExtractBoot(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := map[string]string{
		"./boot/vmlinuz-6.1.0-56-cloud-amd64":           "bzImage",
		"./boot/config-6.1.0-56-cloud-amd64":            "CONFIG_LSM=\"landlock,bpf\"\n",
		"./boot/System.map-6.1.0-56-cloud-amd64":        "map",
		"./lib/modules/6.1.0-56-cloud-amd64/modules.ko": "module",
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, files[name])
	}
	tw.Close()
	dir := t.TempDir()
	release, err := extractBoot(&buf, dir)
	if err != nil {
		t.Fatal(err)
	}
	if release != "6.1.0-56-cloud-amd64" {
		t.Errorf("release = %q", release)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"config", "vmlinuz"}) {
		t.Errorf("extracted %v", names)
	}
	k := Kernel{Config: filepath.Join(dir, "config")}
	if v, err := k.ConfigValue("LSM"); err != nil || v != "landlock,bpf" {
		t.Errorf("CONFIG_LSM = %q, %v", v, err)
	}

	if _, err := extractBoot(bytes.NewReader(nil), t.TempDir()); err == nil {
		t.Errorf("empty package: no error")
	}
}

func TestFetchKernelWithoutApt(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no apt-cache, no apt-get
	cache := t.TempDir()
	_, err := FetchKernel(t.Context(), cache, Debian61)
	if !errors.Is(err, ErrKernelUnavailable) {
		t.Fatalf("no apt, empty cache: %v, want ErrKernelUnavailable", err)
	}

	// A cached kernel serves without apt; the newest one wins.
	for _, pkg := range []string{"linux-image-6.1.0-9-cloud-amd64-unsigned", "linux-image-6.1.0-10-cloud-amd64-unsigned"} {
		dir := filepath.Join(cache, "kernels", pkg)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string]string{"vmlinuz": "bzImage", "config": "CONFIG_LSM=\"bpf\"\n", "release": pkg + "\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	k, err := FetchKernel(t.Context(), cache, Debian61)
	if err != nil {
		t.Fatalf("cached kernel: %v", err)
	}
	if k.Package != "linux-image-6.1.0-10-cloud-amd64-unsigned" || k.Vmlinuz != filepath.Join(cache, "kernels", k.Package, "vmlinuz") {
		t.Errorf("kernel = %+v", k)
	}
	if _, err := FetchKernel(t.Context(), cache, Debian612); !errors.Is(err, ErrKernelUnavailable) {
		t.Errorf("6.12 with only 6.1 cached: %v, want ErrKernelUnavailable", err)
	}
}

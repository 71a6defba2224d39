package fakeapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func startServer(t *testing.T) (*Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	srv, err := Start(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return srv, sock
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func do(t *testing.T, c *http.Client, method, path string, hdr map[string]string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, "http://docker"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "Docker-Client/28.2.2 (linux)")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestCannedAnswers(t *testing.T) {
	srv, sock := startServer(t)
	c := unixClient(sock)

	resp := do(t, c, "HEAD", "/_ping", nil, "")
	if resp.StatusCode != 200 || resp.Header.Get("API-Version") != APIVersion || resp.Header.Get("OSType") != "linux" {
		t.Errorf("HEAD /_ping: status %d, headers %v", resp.StatusCode, resp.Header)
	}
	resp = do(t, c, "GET", "/_ping", nil, "")
	if b, _ := io.ReadAll(resp.Body); string(b) != "OK" {
		t.Errorf("GET /_ping body %q, want OK", b)
	}

	var v struct{ ApiVersion string }
	resp = do(t, c, "GET", "/v1.49/version", nil, "")
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.ApiVersion != APIVersion {
		t.Errorf("GET /version: %v, ApiVersion %q", err, v.ApiVersion)
	}

	var ctr struct {
		Id    string
		State struct{ Running bool }
	}
	resp = do(t, c, "GET", "/v1.49/containers/ctr/json", nil, "")
	if err := json.NewDecoder(resp.Body).Decode(&ctr); err != nil || ctr.Id != ContainerID || !ctr.State.Running {
		t.Errorf("container inspect: %v, %+v", err, ctr)
	}

	var exec struct{ Id string }
	resp = do(t, c, "POST", "/v1.49/containers/ctr/exec", map[string]string{"Content-Type": "application/json"}, `{"Cmd":["sh"]}`)
	if err := json.NewDecoder(resp.Body).Decode(&exec); err != nil || resp.StatusCode != 201 || exec.Id != ExecID {
		t.Errorf("exec create: %v, status %d, %+v", err, resp.StatusCode, exec)
	}

	resp = do(t, c, "HEAD", "/v1.49/containers/ctr/archive?path=%2Fetc%2Fpasswd", nil, "")
	raw, err := base64.StdEncoding.DecodeString(resp.Header.Get("X-Docker-Container-Path-Stat"))
	var st struct {
		Name string
		Mode uint32
	}
	if err != nil || json.Unmarshal(raw, &st) != nil || st.Name != "passwd" || os.FileMode(st.Mode).IsDir() {
		t.Errorf("archive stat header: %v, %q", err, raw)
	}

	var cr struct{ Id string }
	resp = do(t, c, "POST", "/v1.49/containers/create", map[string]string{"Content-Type": "application/json"}, `{"Image":"alpine"}`)
	if err := json.NewDecoder(resp.Body).Decode(&cr); err != nil || resp.StatusCode != 201 || !strings.HasPrefix(cr.Id, "fakenewcid") {
		t.Errorf("container create: %v, status %d, %+v", err, resp.StatusCode, cr)
	}

	var msg struct{ Message string }
	resp = do(t, c, "GET", "/v1.49/no/such/thing", nil, "")
	if err := json.NewDecoder(resp.Body).Decode(&msg); err != nil || resp.StatusCode != 404 || msg.Message == "" {
		t.Errorf("unknown endpoint: %v, status %d, %+v", err, resp.StatusCode, msg)
	}
	resp = do(t, c, "POST", "/v1.49/grpc", map[string]string{"Upgrade": "h2c", "Connection": "Upgrade"}, "")
	if resp.StatusCode < 400 {
		t.Errorf("POST /grpc: status %d, want a refusal", resp.StatusCode)
	}

	got := srv.Requests()
	want := []string{
		"HEAD /_ping",
		"GET /_ping",
		"GET /version",
		"GET /containers/ctr/json",
		"POST /containers/ctr/exec",
		"HEAD /containers/ctr/archive?path=%2Fetc%2Fpasswd",
		"POST /containers/create",
		"GET /no/such/thing",
		"POST /grpc [upgrade:h2c]",
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %d requests, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("request %d = %q, want %q", i, got[i], want[i])
		}
	}
	if got[4].Body != `{"Cmd":["sh"]}` {
		t.Errorf("exec create body recorded as %q", got[4].Body)
	}
	if got[6].Created != cr.Id {
		t.Errorf("create recorded id %q, answered %q", got[6].Created, cr.Id)
	}

	srv.Reset()
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("after Reset: %d requests", n)
	}
}

// A hijacked stream is answered with 101 and then closed, which is how the CLI sees an exec or
// attach finish.
func TestHijack(t *testing.T) {
	srv, sock := startServer(t)
	for _, path := range []string{"/v1.49/exec/fakeexecid/start", "/v1.49/containers/ctr/attach?stream=1&stdin=1"} {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: docker\r\nUser-Agent: Docker-Client/28.2.2 (linux)\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s: %v", path, err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "tcp" {
			t.Errorf("%s: status %d, upgrade %q", path, resp.StatusCode, resp.Header.Get("Upgrade"))
		}
		if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
			t.Errorf("%s: stream after 101: %q, %v", path, rest, err)
		}
		conn.Close()
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || reqs[0].Upgrade != "tcp" || reqs[1].Path != "/containers/ctr/attach" {
		t.Errorf("recorded %v", reqs)
	}
}

// A request without a docker client's User-Agent is what a raw tunnel (dial-stdio) forwards.
func TestTunnelAndLog(t *testing.T) {
	srv, sock := startServer(t)
	var log bytes.Buffer
	srv.LogTo(&log)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /containers/json HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c := unixClient(sock)
	do(t, c, "GET", "/containers/json", map[string]string{TunnelHeader: "1"}, "")
	do(t, c, "GET", "/containers/json", nil, "")

	reqs := srv.Requests()
	if len(reqs) != 3 || !reqs[0].Tunnel || !reqs[1].Tunnel || reqs[2].Tunnel {
		t.Fatalf("tunnel marks wrong: %+v", reqs)
	}
	if b := Blocked(reqs); len(b) != 2 {
		t.Errorf("Blocked = %v, want the two tunnelled requests", b)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("log has %d lines, want 3: %q", len(lines), log.String())
	}
	var first Request
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Path != "/containers/json" || !first.Tunnel {
		t.Errorf("log line %q: %v", lines[0], err)
	}
}

func TestCloseRemovesSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	srv, err := Start(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(sock); err == nil {
		t.Error("second Start on the same socket succeeded")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

func TestBlockedOp(t *testing.T) {
	cases := []struct {
		method, path, query string
		want                string
	}{
		{"POST", "/containers/ctr/exec", "", "exec"},
		{"POST", "/exec/fakeexecid/start", "", "exec"},
		{"GET", "/exec/fakeexecid/json", "", ""},
		{"GET", "/containers/ctr/archive", "path=%2Fetc", "cp"},
		{"HEAD", "/containers/ctr/archive", "path=%2Fetc", "cp"},
		{"PUT", "/containers/ctr/archive", "path=%2Ftmp", "cp"},
		{"POST", "/commit", "container=ctr", "commit"},
		{"GET", "/containers/ctr/changes", "", "diff"},
		{"GET", "/containers/ctr/export", "", "export"},
		{"POST", "/images/create", "fromSrc=-&repo=x", "import"},
		{"POST", "/images/create", "fromImage=alpine&tag=latest", ""},
		{"POST", "/images/load", "quiet=1", "load"},
		{"GET", "/images/get", "names=alpine", "save"},
		{"GET", "/images/registry.example.com/app/get", "", "save"},
		{"POST", "/containers/ctr/attach", "stream=1", "attach"},
		{"GET", "/containers/ctr/attach/ws", "", "attach"},
		{"POST", "/images/registry.example.com/app/push", "tag=1", "push"},
		{"POST", "/images/alpine/tag", "repo=x", "tag"},
		{"POST", "/plugins/foo:latest/push", "", "push"},
		{"GET", "/containers/json", "", ""},
		{"POST", "/containers/create", "", ""},
		{"GET", "/images/alpine/json", "", ""},
		{"GET", "/images/push/json", "", ""},
		{"DELETE", "/images/tag", "", ""},
		{"POST", "/containers/ctr/wait", "", ""},
		{"GET", "/containers/ctr/logs", "", ""},
	}
	for _, c := range cases {
		r := Request{Method: c.method, Path: c.path, Query: c.query, UserAgent: "Docker-Client/28.2.2 (linux)"}
		if got := BlockedOp(r); got != c.want {
			t.Errorf("BlockedOp(%s) = %q, want %q", r, got, c.want)
		}
	}
}

// `docker run` attaches to the container it just created; that is not the attach operation.
func TestBlockedOwnContainerAttach(t *testing.T) {
	reqs := []Request{
		{Method: "POST", Path: "/containers/create", Created: "fakenewcid0000001", UserAgent: "x"},
		{Method: "POST", Path: "/containers/fakenewcid0000001/attach", Query: "stream=1", Upgrade: "tcp", UserAgent: "x"},
		{Method: "POST", Path: "/containers/fakecid0123456789/attach", Query: "stream=1", Upgrade: "tcp", UserAgent: "x"},
	}
	got := Blocked(reqs)
	if len(got) != 1 || got[0].Path != "/containers/fakecid0123456789/attach" {
		t.Errorf("Blocked = %v, want only the attach to the existing container", got)
	}
}

func TestEscapes(t *testing.T) {
	sensitive := []string{"/etc", "/var/run/docker.sock"}
	create := func(hc string) Request {
		return Request{Method: "POST", Path: "/containers/create", Body: `{"Image":"alpine","HostConfig":` + hc + `}`}
	}
	cases := []struct {
		req  Request
		want string
	}{
		{create(`{"Privileged":true,"Binds":["/:/host"]}`), "Binds /:/host,Privileged"},
		{create(`{"PidMode":"host","NetworkMode":"container:x"}`), "NetworkMode container:x,PidMode host"},
		{create(`{"Binds":["/etc/ssl:/x:ro","/srv/data:/d","named:/n"]}`), "Binds /etc/ssl:/x:ro"},
		{create(`{"Mounts":[{"Type":"bind","Source":"/var/run"}],"SecurityOpt":["seccomp=unconfined"]}`), "Mounts bind /var/run,SecurityOpt seccomp=unconfined"},
		{create(`{"CapAdd":["SYS_ADMIN"],"VolumesFrom":["ctr"]}`), "CapAdd,VolumesFrom"},
		{create(`{"NetworkMode":"bridge","Binds":["/srv:/srv"]}`), ""},
		{create(`{"Mounts":[{"Type":"volume","Source":"v","VolumeOptions":{"DriverConfig":{"Options":{"device":"/etc","o":"bind"}}}}]}`), "Mounts volume device /etc"},
		{Request{Method: "POST", Path: "/volumes/create", Body: `{"DriverOpts":{"type":"none","o":"bind","device":"/"}}`}, "DriverOpts device /"},
		{Request{Method: "POST", Path: "/containers/ctr/checkpoints", Body: `{"CheckpointID":"c","CheckpointDir":"/etc"}`}, "CheckpointDir /etc"},
		{Request{Method: "GET", Path: "/containers/json"}, ""},
	}
	for _, c := range cases {
		got := ""
		if e := Escapes([]Request{c.req}, sensitive); len(e) == 1 {
			got = strings.Join(e[0].Reasons, ",")
		} else if len(e) > 1 {
			t.Fatalf("one request gave %d escapes", len(e))
		}
		if got != c.want {
			t.Errorf("Escapes(%s %s) = %q, want %q", c.req, c.req.Body, got, c.want)
		}
	}
}

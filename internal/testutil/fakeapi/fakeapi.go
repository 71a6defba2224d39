// Package fakeapi is a fake Docker Engine API on a unix socket. It records every request and
// answers just enough canned JSON that the real docker CLI (28.x) proceeds to the endpoint that
// matters, so tests can see which API calls an argv really causes without a dockerd.
//
// It is stdlib only, because it also runs inside test VMs (see cmd/fakeapi).
package fakeapi

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// APIVersion is the Engine API version the fake claims to speak.
const APIVersion = "1.49"

// ContainerID is the id of the one running container the fake knows; every container name or id
// resolves to it.
const ContainerID = "fakecid0123456789"

// ExecID is the id returned by exec create.
const ExecID = "fakeexecid"

// TunnelHeader marks a request written by hand and sent through a raw tunnel such as
// `docker system dial-stdio`. Requests that carry it, or carry no User-Agent at all (the docker
// CLI and its plugins always send one), are recorded with Tunnel set.
const TunnelHeader = "X-Dockwatch-Tunnel"

// maxBodyRecord bounds how much of a JSON request body is recorded.
const maxBodyRecord = 64 << 10

// Request is one recorded API request.
type Request struct {
	Method string `json:"method"`
	// Path is the URL path with any /vX.Y version prefix removed.
	Path string `json:"path"`
	// Query is the raw query string.
	Query string `json:"query,omitempty"`
	// Upgrade is the Upgrade header (tcp for hijacked streams, h2c for BuildKit).
	Upgrade   string `json:"upgrade,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	// Tunnel is set for requests that did not come from a docker client's own HTTP stack (see
	// TunnelHeader).
	Tunnel bool `json:"tunnel,omitempty"`
	// Body is the request body when it is JSON (first 64 KiB), for example a container's config.
	Body string `json:"body,omitempty"`
	// Created is the id the fake returned for POST /containers/create.
	Created string `json:"created,omitempty"`
}

// String renders a request the way the corpus's 4th column does:
// "POST /containers/ctr/exec [upgrade:tcp]".
func (r Request) String() string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte(' ')
	b.WriteString(r.Path)
	if r.Query != "" {
		b.WriteByte('?')
		b.WriteString(r.Query)
	}
	if r.Upgrade != "" {
		b.WriteString(" [upgrade:")
		b.WriteString(strings.ToLower(r.Upgrade))
		b.WriteByte(']')
	}
	if r.Tunnel {
		b.WriteString(" [tunnel]")
	}
	return b.String()
}

// Server is a running fake Engine API.
type Server struct {
	ln   net.Listener
	http *http.Server
	done chan struct{}

	mu      sync.Mutex
	reqs    []Request
	log     io.Writer
	created int
}

// Start listens on the unix socket socketPath (which must not exist) and serves the fake API
// until Close.
func Start(socketPath string) (*Server, error) {
	ln, err := net.Listen("unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("fakeapi: listen on %s: %w", socketPath, err)
	}
	// The docker group would own the real socket; tests may run the CLI as another user.
	if err := os.Chmod(socketPath, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("fakeapi: chmod %s: %w", socketPath, err)
	}
	s := &Server{ln: ln, done: make(chan struct{})}
	s.http = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		s.http.Serve(ln)
	}()
	return s, nil
}

// LogTo makes the server also write every request to w as one JSON object per line.
func (s *Server) LogTo(w io.Writer) {
	s.mu.Lock()
	s.log = w
	s.mu.Unlock()
}

// Requests returns a copy of the requests recorded since Start or the last Reset.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Reset forgets the recorded requests.
func (s *Server) Reset() {
	s.mu.Lock()
	s.reqs = nil
	s.mu.Unlock()
}

// Close stops the server, closes open connections and removes the socket.
func (s *Server) Close() error {
	err := s.http.Close()
	<-s.done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

var versionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+/`)

func (s *Server) record(r *http.Request) *Request {
	p := r.URL.Path
	if loc := versionPrefix.FindStringIndex(p); loc != nil {
		p = p[loc[1]-1:]
	}
	rec := &Request{
		Method:    r.Method,
		Path:      p,
		Query:     r.URL.RawQuery,
		Upgrade:   r.Header.Get("Upgrade"),
		UserAgent: r.Header.Get("User-Agent"),
	}
	rec.Tunnel = r.Header.Get(TunnelHeader) != "" || rec.UserAgent == ""
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") && r.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxBodyRecord))
		rec.Body = string(body)
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
	}
	return rec
}

func (s *Server) commit(rec *Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, *rec)
	if s.log != nil {
		line, _ := json.Marshal(rec)
		s.log.Write(append(line, '\n'))
	}
}

func (s *Server) newContainerID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created++
	return fmt.Sprintf("fakenewcid%07d", s.created)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := s.record(r)
	// Record before answering, so a request whose answer kills the client is still seen.
	if r.Method == http.MethodPost && rec.Path == "/containers/create" {
		rec.Created = s.newContainerID()
	}
	s.commit(rec)
	route(w, r, rec)
}

// Segments of a path; image names may contain slashes, so routes match on the ends.
func route(w http.ResponseWriter, r *http.Request, rec *Request) {
	p, m := rec.Path, r.Method
	seg := strings.Split(strings.Trim(p, "/"), "/")
	last := seg[len(seg)-1]
	getOrHead := m == http.MethodGet || m == http.MethodHead

	switch {
	case p == "/_ping":
		ping(w, r)
	case p == "/version" && getOrHead:
		writeJSON(w, http.StatusOK, versionBody)
	case p == "/info" && getOrHead:
		writeJSON(w, http.StatusOK, infoBody)
	case p == "/session" || p == "/grpc":
		// Refusing BuildKit makes clients fall back or stop, before any build runs.
		writeError(w, http.StatusNotFound, "fakeapi: "+p+" is not supported")
	case p == "/events":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
	case p == "/system/df":
		writeJSON(w, http.StatusOK, map[string]any{"LayersSize": 0, "Images": []any{}, "Containers": []any{}, "Volumes": []any{}, "BuildCache": []any{}})
	case p == "/commit" && m == http.MethodPost:
		writeJSON(w, http.StatusCreated, map[string]string{"Id": "sha256:" + strings.Repeat("c", 64)})
	case p == "/build" && m == http.MethodPost:
		io.Copy(io.Discard, r.Body)
		jsonStream(w, map[string]any{"stream": "fakeapi: build\n"}, map[string]any{"aux": map[string]string{"ID": "sha256:" + strings.Repeat("b", 64)}})

	case p == "/containers/json":
		writeJSON(w, http.StatusOK, []any{containerSummary})
	case p == "/containers/create" && m == http.MethodPost:
		writeJSON(w, http.StatusCreated, map[string]any{"Id": rec.Created, "Warnings": []string{}})
	case p == "/containers/prune" || p == "/images/prune" || p == "/volumes/prune" || p == "/networks/prune":
		writeJSON(w, http.StatusOK, map[string]any{"SpaceReclaimed": 0})
	case strings.HasPrefix(p, "/containers/") && len(seg) >= 2:
		containerRoute(w, r, rec, seg)
	case strings.HasPrefix(p, "/exec/") && len(seg) == 3:
		switch {
		case last == "start" && m == http.MethodPost:
			hijackOrOK(w, r)
		case last == "json" && getOrHead:
			writeJSON(w, http.StatusOK, map[string]any{"ID": seg[1], "Running": false, "ExitCode": 0, "Pid": 0, "ContainerID": ContainerID})
		case last == "resize":
			w.WriteHeader(http.StatusOK)
		default:
			notFound(w, rec)
		}

	case p == "/images/json":
		writeJSON(w, http.StatusOK, []any{})
	case p == "/images/search":
		writeJSON(w, http.StatusOK, []any{})
	case p == "/images/create" && m == http.MethodPost:
		io.Copy(io.Discard, r.Body)
		jsonStream(w, map[string]any{"status": "fakeapi: image created"})
	case p == "/images/load" && m == http.MethodPost:
		io.Copy(io.Discard, r.Body)
		jsonStream(w, map[string]any{"stream": "Loaded image: fakeapi:latest\n"})
	case (p == "/images/get" || strings.HasPrefix(p, "/images/") && last == "get") && getOrHead:
		writeTar(w, http.StatusOK, "manifest.json")
	case strings.HasPrefix(p, "/images/") && last == "push" && m == http.MethodPost:
		jsonStream(w, map[string]any{"status": "fakeapi: pushed"},
			map[string]any{"aux": map[string]any{"Tag": "latest", "Digest": "sha256:" + strings.Repeat("d", 64), "Size": 0}})
	case strings.HasPrefix(p, "/images/") && last == "tag" && m == http.MethodPost:
		w.WriteHeader(http.StatusCreated)
	case strings.HasPrefix(p, "/images/") && last == "history" && getOrHead:
		writeJSON(w, http.StatusOK, []any{map[string]any{"Id": "sha256:" + strings.Repeat("a", 64), "Created": 0, "CreatedBy": "fakeapi", "Size": 0}})
	case strings.HasPrefix(p, "/images/") && last == "json" && getOrHead:
		writeJSON(w, http.StatusOK, imageInspect(strings.TrimSuffix(strings.TrimPrefix(p, "/images/"), "/json")))
	case strings.HasPrefix(p, "/images/") && m == http.MethodDelete:
		writeJSON(w, http.StatusOK, []any{map[string]string{"Untagged": strings.TrimPrefix(p, "/images/")}})

	case strings.HasPrefix(p, "/plugins/") && last == "push" && m == http.MethodPost:
		jsonStream(w, map[string]any{"status": "fakeapi: pushed"})
	case p == "/plugins" && getOrHead:
		writeJSON(w, http.StatusOK, []any{})
	case p == "/networks" && getOrHead:
		writeJSON(w, http.StatusOK, []any{})
	case p == "/volumes" && getOrHead:
		writeJSON(w, http.StatusOK, map[string]any{"Volumes": []any{}, "Warnings": []any{}})
	case p == "/volumes/create" && m == http.MethodPost:
		writeJSON(w, http.StatusCreated, map[string]any{"Name": "fakevol", "Driver": "local", "Mountpoint": "/var/lib/docker/volumes/fakevol/_data", "Scope": "local"})
	default:
		notFound(w, rec)
	}
}

func containerRoute(w http.ResponseWriter, r *http.Request, rec *Request, seg []string) {
	m := r.Method
	getOrHead := m == http.MethodGet || m == http.MethodHead
	id := seg[1]
	if len(seg) == 2 {
		if m == http.MethodDelete {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		notFound(w, rec)
		return
	}
	switch op := strings.Join(seg[2:], "/"); {
	case op == "json" && getOrHead:
		writeJSON(w, http.StatusOK, containerInspect(id))
	case op == "exec" && m == http.MethodPost:
		io.Copy(io.Discard, r.Body)
		writeJSON(w, http.StatusCreated, map[string]string{"Id": ExecID})
	case op == "attach" && m == http.MethodPost:
		hijackOrOK(w, r)
	case op == "attach/ws":
		writeError(w, http.StatusBadRequest, "fakeapi: websocket attach is not supported")
	case op == "wait" && m == http.MethodPost:
		writeJSON(w, http.StatusOK, map[string]any{"StatusCode": 0})
	case op == "archive" && m == http.MethodHead:
		p := r.URL.Query().Get("path")
		w.Header().Set("X-Docker-Container-Path-Stat", pathStat(p))
		w.WriteHeader(http.StatusOK)
	case op == "archive" && m == http.MethodGet:
		p := r.URL.Query().Get("path")
		w.Header().Set("X-Docker-Container-Path-Stat", pathStat(p))
		writeTar(w, http.StatusOK, path.Base(p))
	case op == "archive" && m == http.MethodPut:
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	case op == "export" && getOrHead:
		writeTar(w, http.StatusOK, "etc/hostname")
	case op == "changes" && getOrHead:
		writeJSON(w, http.StatusOK, []any{map[string]any{"Path": "/tmp", "Kind": 0}})
	case op == "logs" && getOrHead:
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
		w.WriteHeader(http.StatusOK)
	case op == "top" && getOrHead:
		writeJSON(w, http.StatusOK, map[string]any{"Titles": []string{"PID", "CMD"}, "Processes": [][]string{{"1", "sh"}}})
	case op == "stats" && getOrHead:
		writeJSON(w, http.StatusOK, map[string]any{"id": ContainerID, "name": "/ctr"})
	case op == "start" || op == "stop" || op == "restart" || op == "kill" || op == "pause" || op == "unpause":
		w.WriteHeader(http.StatusNoContent)
	case op == "rename" || op == "resize":
		w.WriteHeader(http.StatusOK)
	case op == "update":
		writeJSON(w, http.StatusOK, map[string]any{"Warnings": []string{}})
	case op == "checkpoints" && m == http.MethodPost:
		w.WriteHeader(http.StatusCreated)
	default:
		notFound(w, rec)
	}
}

func ping(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("API-Version", APIVersion)
	h.Set("OSType", "linux")
	h.Set("Docker-Experimental", "false")
	h.Set("Builder-Version", "1")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.WriteString(w, "OK")
	}
}

// hijackOrOK answers an attach or exec start. With "Upgrade: tcp" the client expects a raw stream
// after 101; the fake sends an empty stream (it ends at once), which the CLI takes as the command
// having finished.
func hijackOrOK(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if r.Header.Get("Upgrade") == "" {
		w.Header().Set("Content-Type", "application/vnd.docker.raw-stream")
		w.WriteHeader(http.StatusOK)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, http.StatusInternalServerError, "fakeapi: cannot hijack")
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
	buf.Flush()
}

func notFound(w http.ResponseWriter, rec *Request) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("fakeapi: no such endpoint: %s %s", rec.Method, rec.Path))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"message": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"message":"fakeapi: encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

func jsonStream(w http.ResponseWriter, msgs ...map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, m := range msgs {
		enc.Encode(m)
	}
	bw.Flush()
}

func writeTar(w http.ResponseWriter, code int, name string) {
	if name == "" || name == "/" || name == "." {
		name = "fakeapi"
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := []byte("fakeapi\n")
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg})
	tw.Write(content)
	tw.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// pathStat is the base64 JSON stat the CLI reads from X-Docker-Container-Path-Stat. Paths that
// end in "/" or whose last element has no dot (outside /etc) are directories, so that both
// "cp FILE ctr:/tmp" and "cp ctr:/etc/passwd -" take their usual path.
func pathStat(p string) string {
	base := path.Base(p)
	mode := uint32(0o644)
	isDir := strings.HasSuffix(p, "/") || p == "" || (!strings.Contains(base, ".") && !strings.HasPrefix(p, "/etc/"))
	if isDir {
		mode = uint32(os.ModeDir | 0o755)
	}
	st, _ := json.Marshal(map[string]any{"name": base, "size": 8, "mode": mode, "mtime": time.Unix(0, 0).UTC().Format(time.RFC3339), "linkTarget": ""})
	return base64.StdEncoding.EncodeToString(st)
}

var versionBody = map[string]any{
	"Platform":      map[string]string{"Name": "fakeapi"},
	"Components":    []any{map[string]any{"Name": "Engine", "Version": "28.2.2", "Details": map[string]string{"ApiVersion": APIVersion, "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"}}},
	"Version":       "28.2.2",
	"ApiVersion":    APIVersion,
	"MinAPIVersion": "1.24",
	"GitCommit":     "fakeapi",
	"GoVersion":     "go1.24",
	"Os":            "linux",
	"Arch":          "amd64",
	"KernelVersion": "6.1.0",
	"BuildTime":     "2025-01-01T00:00:00.000000000+00:00",
}

var infoBody = map[string]any{
	"ID":                 "FAKE:API0:0000",
	"Containers":         1,
	"ContainersRunning":  1,
	"Images":             1,
	"Driver":             "vfs",
	"DriverStatus":       [][]string{},
	"Plugins":            map[string]any{"Volume": []string{"local"}, "Network": []string{"bridge"}, "Log": []string{"json-file"}},
	"MemoryLimit":        true,
	"SwapLimit":          true,
	"CPUCfsPeriod":       true,
	"CPUCfsQuota":        true,
	"IPv4Forwarding":     true,
	"LoggingDriver":      "json-file",
	"CgroupDriver":       "cgroupfs",
	"CgroupVersion":      "2",
	"KernelVersion":      "6.1.0",
	"OperatingSystem":    "fakeapi",
	"OSVersion":          "1",
	"OSType":             "linux",
	"Architecture":       "x86_64",
	"IndexServerAddress": "https://index.docker.io/v1/",
	"RegistryConfig":     map[string]any{"IndexConfigs": map[string]any{}, "InsecureRegistryCIDRs": []string{}},
	"NCPU":               2,
	"MemTotal":           1 << 30,
	"DockerRootDir":      "/var/lib/docker",
	"Name":               "fakeapi",
	"Labels":             []string{},
	"ServerVersion":      "28.2.2",
	"Runtimes":           map[string]any{"runc": map[string]string{"path": "runc"}},
	"DefaultRuntime":     "runc",
	"Swarm":              map[string]any{"LocalNodeState": "inactive", "ControlAvailable": false},
	"SecurityOptions":    []string{"name=seccomp,profile=builtin"},
	"Warnings":           []string{},
}

var containerSummary = map[string]any{
	"Id":      ContainerID,
	"Names":   []string{"/ctr"},
	"Image":   "alpine",
	"ImageID": "sha256:" + strings.Repeat("a", 64),
	"Command": "sh",
	"Created": 0,
	"State":   "running",
	"Status":  "Up",
	"Ports":   []any{},
	"Labels":  map[string]string{},
	"Mounts":  []any{},
}

func containerInspect(name string) map[string]any {
	id := ContainerID
	if strings.HasPrefix(name, "fakenewcid") {
		id = name
	}
	return map[string]any{
		"Id":      id,
		"Name":    "/ctr",
		"Created": "2025-01-01T00:00:00Z",
		"Path":    "sh",
		"Args":    []string{},
		"Image":   "sha256:" + strings.Repeat("a", 64),
		"State": map[string]any{
			"Status": "running", "Running": true, "Paused": false, "Restarting": false,
			"Pid": 4242, "ExitCode": 0, "StartedAt": "2025-01-01T00:00:00Z",
		},
		"Config": map[string]any{
			"Image": "alpine", "Cmd": []string{"sh"}, "Tty": false, "OpenStdin": true,
			"AttachStdin": false, "AttachStdout": true, "AttachStderr": true, "Labels": map[string]string{},
		},
		"HostConfig":      map[string]any{"NetworkMode": "bridge", "LogConfig": map[string]any{"Type": "json-file"}},
		"NetworkSettings": map[string]any{"Networks": map[string]any{}, "Ports": map[string]any{}},
		"Mounts":          []any{},
	}
}

func imageInspect(name string) map[string]any {
	return map[string]any{
		"Id":           "sha256:" + strings.Repeat("a", 64),
		"RepoTags":     []string{name},
		"RepoDigests":  []string{},
		"Created":      "2025-01-01T00:00:00Z",
		"Os":           "linux",
		"Architecture": "amd64",
		"Size":         0,
		"Config":       map[string]any{"Cmd": []string{"sh"}},
		"RootFS":       map[string]any{"Type": "layers"},
	}
}

package fakeapi

import (
	"net/url"
	"strings"
)

// Blocked returns the requests that reached an endpoint of a blocked operation (exec, cp,
// commit, diff, export, import, load, save, attach, push, tag) or came through a raw tunnel such
// as `docker system dial-stdio`.
//
// Attaching to a container created earlier in the same request list is how `docker run` (without
// -d) shows its own container's output, so it is not counted; attaching to any other container
// is.
func Blocked(reqs []Request) []Request {
	own := map[string]bool{}
	var out []Request
	for _, r := range reqs {
		if r.Created != "" {
			own[r.Created] = true
		}
		if op := BlockedOp(r); op != "" {
			if op == "attach" && own[pathSegment(r.Path, 1)] {
				continue
			}
			out = append(out, r)
		}
	}
	return out
}

// BlockedOp names the blocked operation a single request belongs to ("exec", "cp", ...,
// "tunnel"), or returns "" for a request that is not blocked.
func BlockedOp(r Request) string {
	if r.Tunnel {
		return "tunnel"
	}
	p, m := r.Path, r.Method
	get := m == "GET" || m == "HEAD"
	post := m == "POST"
	seg := strings.Split(strings.Trim(p, "/"), "/")
	last := seg[len(seg)-1]
	switch {
	case strings.HasPrefix(p, "/containers/") && len(seg) >= 3:
		switch op := strings.Join(seg[2:], "/"); {
		case op == "exec" && post:
			return "exec"
		case op == "archive" && (get || m == "PUT"), op == "copy" && post:
			return "cp"
		case op == "changes" && get:
			return "diff"
		case op == "export" && get:
			return "export"
		case op == "attach" && post, op == "attach/ws":
			return "attach"
		}
	case strings.HasPrefix(p, "/exec/") && len(seg) == 3 && last == "start" && post:
		return "exec"
	case p == "/commit" && post:
		return "commit"
	case p == "/images/create" && post:
		if q, err := url.ParseQuery(r.Query); err != nil || q.Has("fromSrc") {
			return "import"
		}
	case p == "/images/load" && post:
		return "load"
	case p == "/images/get" && get, strings.HasPrefix(p, "/images/") && len(seg) >= 3 && last == "get" && get:
		return "save"
	case strings.HasPrefix(p, "/images/") && len(seg) >= 3 && last == "push" && post:
		return "push"
	case strings.HasPrefix(p, "/images/") && len(seg) >= 3 && last == "tag" && post:
		return "tag"
	case strings.HasPrefix(p, "/plugins/") && len(seg) >= 3 && last == "push" && post:
		return "push"
	}
	return ""
}

func pathSegment(p string, i int) string {
	seg := strings.Split(strings.Trim(p, "/"), "/")
	if i < len(seg) {
		return seg[i]
	}
	return ""
}

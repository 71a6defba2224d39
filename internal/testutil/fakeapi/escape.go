package fakeapi

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Escape is a recorded request whose body would give a container (or the daemon acting for the
// client) access to the host.
type Escape struct {
	Request Request
	Reasons []string // e.g. "Privileged", "Binds /:/host", "PidMode host"
}

// Escapes returns the requests whose bodies ask for a host escape: container create with
// privileged mode, added capabilities, devices, another container's volumes, a host or
// container: namespace, an unconfined security option, or a bind of a path that is, is under,
// or is above one of sensitive ("/" is above every path); a local volume that binds such a
// path; a checkpoint written to a host directory.
func Escapes(reqs []Request, sensitive []string) []Escape {
	var out []Escape
	for _, r := range reqs {
		if r.Method != "POST" {
			continue
		}
		var reasons []string
		switch {
		case r.Path == "/containers/create":
			reasons = containerEscapes(r.Body, sensitive)
		case r.Path == "/volumes/create":
			reasons = volumeEscapes(r.Body, sensitive)
		case strings.HasPrefix(r.Path, "/containers/") && strings.HasSuffix(r.Path, "/checkpoints"):
			var cp struct{ CheckpointDir string }
			if json.Unmarshal([]byte(r.Body), &cp) == nil && cp.CheckpointDir != "" {
				reasons = []string{"CheckpointDir " + cp.CheckpointDir}
			}
		}
		if len(reasons) > 0 {
			out = append(out, Escape{Request: r, Reasons: reasons})
		}
	}
	return out
}

type hostConfig struct {
	Privileged        bool
	CapAdd            []string
	Devices           []json.RawMessage
	DeviceCgroupRules []string
	BlkioDeviceReadBps, BlkioDeviceWriteBps,
	BlkioDeviceReadIOps, BlkioDeviceWriteIOps []json.RawMessage
	VolumesFrom                                         []string
	PidMode, IpcMode, UTSMode, UsernsMode, CgroupnsMode string
	NetworkMode                                         string
	SecurityOpt                                         []string
	Binds                                               []string
	Mounts                                              []struct {
		Type, Source  string
		VolumeOptions *struct {
			DriverConfig *struct{ Options map[string]string }
		}
	}
}

func containerEscapes(body string, sensitive []string) []string {
	var cfg struct{ HostConfig hostConfig }
	if err := json.Unmarshal([]byte(body), &cfg); err != nil {
		return []string{fmt.Sprintf("unreadable create body (%v)", err)}
	}
	h := cfg.HostConfig
	var rs []string
	if h.Privileged {
		rs = append(rs, "Privileged")
	}
	for name, n := range map[string]int{"CapAdd": len(h.CapAdd), "Devices": len(h.Devices),
		"DeviceCgroupRules":  len(h.DeviceCgroupRules),
		"BlkioDeviceReadBps": len(h.BlkioDeviceReadBps), "BlkioDeviceWriteBps": len(h.BlkioDeviceWriteBps),
		"BlkioDeviceReadIOps": len(h.BlkioDeviceReadIOps), "BlkioDeviceWriteIOps": len(h.BlkioDeviceWriteIOps),
		"VolumesFrom": len(h.VolumesFrom)} {
		if n > 0 {
			rs = append(rs, name)
		}
	}
	for name, mode := range map[string]string{"PidMode": h.PidMode, "IpcMode": h.IpcMode, "UTSMode": h.UTSMode,
		"UsernsMode": h.UsernsMode, "CgroupnsMode": h.CgroupnsMode, "NetworkMode": h.NetworkMode} {
		if mode == "host" || strings.HasPrefix(mode, "container:") {
			rs = append(rs, name+" "+mode)
		}
	}
	for _, o := range h.SecurityOpt {
		if strings.HasSuffix(o, "=unconfined") || strings.HasSuffix(o, ":unconfined") ||
			o == "label=disable" || o == "label:disable" || o == "no-new-privileges=false" || o == "no-new-privileges:false" {
			rs = append(rs, "SecurityOpt "+o)
		}
	}
	for _, b := range h.Binds {
		src, _, _ := strings.Cut(b, ":")
		if strings.HasPrefix(src, "/") && Sensitive(src, sensitive) {
			rs = append(rs, "Binds "+b)
		}
	}
	for _, m := range h.Mounts {
		if m.Type == "bind" && Sensitive(m.Source, sensitive) {
			rs = append(rs, "Mounts bind "+m.Source)
		}
		// A local volume with o=bind and device=PATH is a bind mount by another name.
		if v := m.VolumeOptions; v != nil && v.DriverConfig != nil {
			if dev := v.DriverConfig.Options["device"]; dev != "" && Sensitive(dev, sensitive) {
				rs = append(rs, "Mounts volume device "+dev)
			}
		}
	}
	sort.Strings(rs)
	return rs
}

func volumeEscapes(body string, sensitive []string) []string {
	var v struct{ DriverOpts map[string]string }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return []string{fmt.Sprintf("unreadable volume body (%v)", err)}
	}
	if dev := v.DriverOpts["device"]; dev != "" && Sensitive(dev, sensitive) {
		return []string{"DriverOpts device " + dev}
	}
	return nil
}

// Sensitive reports whether host path p is one of sensitive, under one, or above one. A relative
// path counts as sensitive, since what it names depends on the daemon's working directory.
func Sensitive(p string, sensitive []string) bool {
	if !strings.HasPrefix(p, "/") {
		return true
	}
	p = path.Clean(p)
	for _, s := range sensitive {
		s = path.Clean(s)
		if p == s || strings.HasPrefix(p, s+"/") || p == "/" || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}

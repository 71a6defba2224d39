package policy

import "strings"

// match reports whether value v of a flag with effect ef triggers the effect (docs/tables.md,
// MATCH).
func (t *Tables) match(ef Effect, v string) bool {
	if ef.NPat == 0 || len(v) > ValueMax {
		return true
	}
	pats := t.Patterns[ef.Pat : int(ef.Pat)+int(ef.NPat)]
	switch ef.Extract {
	case ExtractWhole:
		return anyPattern(pats, v)
	case ExtractVolumeSrc:
		src, _, ok := strings.Cut(v, ":")
		return ok && anyPattern(pats, src)
	case ExtractCSVField:
		if strings.Contains(v, `"`) {
			return true
		}
		for _, f := range strings.Split(v, ",") {
			k, rest, ok := strings.Cut(f, "=")
			if ok && keyMatch(pats, strings.ToLower(k)) && anyPattern(pats, rest) {
				return true
			}
		}
		return false
	case ExtractCSVElem:
		if strings.Contains(v, `"`) {
			return true
		}
		for _, f := range strings.Split(v, ",") {
			if anyPattern(pats, f) {
				return true
			}
		}
		return false
	case ExtractKVKey:
		k, _, _ := strings.Cut(v, "=")
		return anyPattern(pats, k)
	}
	return true // an extractor this interpreter does not know: be conservative
}

func patString(p *Pattern) string { return string(p.S[:p.Len]) }

func anyPattern(pats []Pattern, s string) bool {
	for i := range pats {
		p := &pats[i]
		ps := patString(p)
		var hit bool
		switch p.Kind {
		case PatExact:
			hit = s == ps
		case PatPrefix:
			hit = strings.HasPrefix(s, ps)
		case PatSuffix:
			hit = strings.HasSuffix(s, ps)
		case PatPath:
			hit = sensitivePath(s, ps)
		}
		if hit {
			return true
		}
	}
	return false
}

func keyMatch(pats []Pattern, k string) bool {
	for i := range pats {
		if pats[i].Kind == PatKey && patString(&pats[i]) == k {
			return true
		}
	}
	return false
}

// sensitivePath reports whether bind source s may reach p: s is relative, not canonical, the
// root, or the same as, under, or an ancestor of p.
func sensitivePath(s, p string) bool {
	if s == "" {
		return false
	}
	if s[0] != '/' {
		return s[0] == '.' || strings.Contains(s, "/")
	}
	for len(s) > 1 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	if s == "/" {
		return true
	}
	if strings.Contains(s, "//") || strings.Contains(s, "/./") || strings.Contains(s, "/../") ||
		strings.HasSuffix(s, "/.") || strings.HasSuffix(s, "/..") {
		return true
	}
	return s == p || strings.HasPrefix(s, p+"/") || strings.HasPrefix(p, s+"/")
}

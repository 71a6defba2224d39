package policy

import (
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

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
		for rest, more := v, true; more; {
			var f string
			f, rest, more = strings.Cut(rest, ",")
			k, val, ok := strings.Cut(f, "=")
			if ok && keyMatch(pats, k) && anyPattern(pats, val) {
				return true
			}
		}
		return false
	case ExtractCSVElem:
		if strings.Contains(v, `"`) {
			return true
		}
		for rest, more := v, true; more; {
			var f string
			f, rest, more = strings.Cut(rest, ",")
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

// patString views a pattern's bytes as a string without copying: the tables are not modified
// while they are in use.
func patString(p *Pattern) string { return unsafe.String(&p.S[0], int(p.Len)) }

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

// keyMatch reports whether strings.ToLower(k) is one of the key patterns, as docker lower-cases
// mount option keys, without building the lower-cased copy.
func keyMatch(pats []Pattern, k string) bool {
	for i := range pats {
		if pats[i].Kind == PatKey && lowerEquals(k, patString(&pats[i])) {
			return true
		}
	}
	return false
}

// lowerEquals is strings.ToLower(s) == want, rune by rune.
func lowerEquals(s, want string) bool {
	j := 0
	for _, r := range s {
		var buf [utf8.UTFMax]byte
		n := utf8.EncodeRune(buf[:], unicode.ToLower(r))
		if j+n > len(want) || want[j:j+n] != string(buf[:n]) {
			return false
		}
		j += n
	}
	return j == len(want)
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
	return s == p || underPath(s, p) || underPath(p, s)
}

// underPath reports whether path s lies strictly below directory p.
func underPath(s, p string) bool {
	return len(s) > len(p) && s[len(p)] == '/' && s[:len(p)] == p
}

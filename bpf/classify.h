/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * classify.h: the BPF interpreter of the classifier tables.
 *
 * docs/tables.md is the contract. internal/policy (Go) compiles the grammar and the policy into
 * tables and is the reference interpreter; this file must return exactly the same struct result
 * for the same tables and argv. internal/loader/classify_test.go checks that, row by row.
 *
 * API (include this header once per BPF object; it defines the table maps):
 *
 *   struct classify_scratch *s = scratch_acquire();      NULL: every slot of this CPU is busy
 *   argv_read_user(s, mm->arg_start, mm->arg_end);       copies argv into s->argv
 *   classify(s, BIN_DOCKER, &res);                        fills struct result
 *   ... s->argv.data[0 .. s->argv.nbytes) is argv, NUL separated, for an event ...
 *   scratch_release(s);
 *
 * When the argv is longer than MAX_ARGV_BYTES, has more than MAX_TOKENS elements, or cannot be
 * read, s->argv.truncated or s->argv.fault is set and classify() returns VERDICT_UNDECIDED.
 * The first MAX_ARGV_BYTES bytes are still copied, for the event.
 *
 * Table layout in the maps (hidden from callers; internal/loader/tables.go writes it):
 * every table exists twice, for generation 0 and 1. "table_gen"[0] names the live one. A
 * classification reads it once at the start and then sees only that generation, so a reload
 * writes the other generation and flips table_gen with one map update: a classification never
 * sees half-written tables. Node, effect and pattern ids inside the tables are relative to the
 * generation; only the lexicon key's node is absolute (gen * NODES_PER_GEN + node), so that both
 * generations share one hash map.
 *
 * Build with -mcpu=v3 (atomic compare-and-exchange for the scratch slots; kernel >= 5.12).
 * Needs bpf_loop (kernel >= 5.17), which the verifier inlines into a plain loop.
 */
#ifndef DOCKWATCH_CLASSIFY_H
#define DOCKWATCH_CLASSIFY_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Limits shared with internal/policy/tables.go. */
#define MAX_ARGV_BYTES 8192
#define MAX_TOKENS 256
#define LEX_NAME_MAX 32 /* NAME_MAX in docs/tables.md; linux/limits.h owns that name */
#define VALUE_MAX 256
#define CLUSTER_MAX 32
#define PATTERN_MAX 64

/* Map sizes, per generation. */
#define TABLE_GENS 2
#define NODES_PER_GEN 4096
#define EFFECTS_PER_GEN 512
#define PATTERNS_PER_GEN 512
#define RULES_PER_GEN 4
#define ENTRIES_PER_GEN 4
#define LEXICON_ENTRIES 32768 /* both generations together */
#define SCRATCH_SLOTS 4

#define LEX_WORD 1
#define LEX_LONG 2
#define LEX_SHORT 3

#define NODE_INTERSPERSED 1
#define NODE_HAS_CHILDREN 2
#define NODE_ENTRY 4
#define NODE_HELP_TOPIC 8
#define NODE_STOP_ALLOW 16
#define NODE_HELP_LOCAL 32

#define EFFECT_HELP 1
#define EFFECT_RULE 2

#define EXTRACT_WHOLE 1
#define EXTRACT_VOLUME_SRC 2
#define EXTRACT_CSV_FIELD 3
#define EXTRACT_CSV_ELEM 4
#define EXTRACT_KV_KEY 5

#define PAT_EXACT 1
#define PAT_PREFIX 2
#define PAT_SUFFIX 3
#define PAT_PATH 4
#define PAT_KEY 5

#define RULE_NONE 0
#define RULE_BLOCKED_SUBCOMMAND 1
#define RULE_ESCAPE 2
#define RULE_UNKNOWN 3

#define ACTION_OFF 0
#define ACTION_BLOCK 1
#define ACTION_AUDIT 2

#define VERDICT_ALLOW 1
#define VERDICT_BLOCK 2
#define VERDICT_AUDIT 3
#define VERDICT_NOT_CLIENT 4
#define VERDICT_UNDECIDED 5

#define BIN_DOCKER 0
#define BIN_COMPOSE 1
#define BIN_BUILDX 2
#define NUM_BINARIES 3

struct lex_key {
	__u16 node;
	__u8 kind;
	__u8 len;
	__u8 name[LEX_NAME_MAX];
};

struct lex_val {
	__u16 target;
	__u8 takes_value;
	__u8 pad;
};

struct node {
	__u16 leaf_effect;
	__u16 flags;
};

struct effect {
	__u8 kind;
	__u8 rule;
	__u8 extract;
	__u8 npat;
	__u16 pat;
	__u16 pad;
};

struct pattern {
	__u8 kind;
	__u8 len;
	__u8 s[PATTERN_MAX];
};

struct result {
	__u8 verdict;
	__u8 rule;
	__u8 help;
	__u8 pad;
	__u16 node;
	__u16 effect;
	__u16 token;
	__u16 pad2;
};

/*
 * argv as read from the process. Token i is data[off[i] .. off[i]+len[i]), NUL terminated.
 * data is twice MAX_ARGV_BYTES (plus one word): every index is masked with ARGV_DATA_MASK,
 * which the verifier can bound, and a masked index of a byte inside argv is the index itself.
 * The upper half is never argv; the interpreter keeps a lowered mount key there (LKEY_OFF).
 */
#define ARGV_DATA_MASK (2 * MAX_ARGV_BYTES - 1)
#define ARGV_DATA_SIZE (2 * MAX_ARGV_BYTES + 64)
#define LKEY_OFF (MAX_ARGV_BYTES + 1024)

struct argv_buf {
	__u32 ntok;	 /* tokens stored */
	__u32 nbytes;	 /* bytes stored, NULs included */
	__u32 total;	 /* arg_end - arg_start: what the process really has */
	__u32 tstart;	 /* start of the token being split */
	__u32 scan;	 /* where the search for its NUL goes on */
	__u32 limit;	 /* environment scan (lsm.h): NULs from here on are the next chunk's */
	__u8 truncated; /* more than MAX_TOKENS tokens or MAX_ARGV_BYTES bytes */
	__u8 fault;	 /* a read failed */
	__u16 pad;
	__u16 off[MAX_TOKENS];
	__u16 len[MAX_TOKENS];
	__u8 data[ARGV_DATA_SIZE] __attribute__((aligned(8)));
};

struct cls_trigger {
	__u8 set;
	__u8 rule;
	__u16 effect;
	__u16 token;
	__u16 pad;
};

/*
 * A lexicon lookup remembered: the key, and the value copied (not a pointer into the hash map,
 * whose elements a reload may reuse). state: 0 empty, 1 found, 2 not found.
 */
#define LEX_MEMO 8
struct cls_memo {
	struct lex_key key;
	struct lex_val val;
	__u32 state;
};

/* Interpreter state. It lives in the scratch map because bpf_loop callbacks share it. */
struct cls_state {
	__u32 slot; /* scratch slot, for callbacks to find it again */
	__u32 gen;
	__u32 i, n; /* current token, token count */
	__u16 node, leaf_tok;
	__u16 stray; /* token of a stray word at a node with children (0: none) */
	__u16 pad0;
	__u8 help, dashdash, root_dd, done;
	struct cls_trigger first_block, first_audit;
	struct result res;
	/* the value flag of the current token, applied after it is parsed */
	__u32 v_off, v_len;
	__u16 v_effect, v_tok;
	/* shorthand cluster at token t_idx */
	__u32 t_idx, t_off, t_len, j;
	/* MATCH of one value */
	__u32 m_off, m_len, m_fstart, m_eq, m_pos;
	__u16 m_pat;
	__u8 m_npat, m_extract, m_hit;
	__u8 pad1[3];
	/* ANYPAT of one candidate string */
	__u32 c_off, c_len, c_L;
	__u8 c_path, c_hit, c_keys;
	__u8 pad2;
	/* byte scans */
	__u32 sc_off, sc_len, sc_res;
	__u8 sc_ch;
	__u8 pad3[3];
	/* lowered key: l_k input bytes consumed, l_o output bytes */
	__u32 l_off, l_len, l_k, l_o;
	struct lex_key key;
	/* lexicon answers of this classification: a long argv repeats its flags ("-e" ...) */
	struct cls_memo memo[LEX_MEMO];
};

struct classify_scratch {
	__u32 busy;
	__u32 pad;
	struct cls_state st;
	struct argv_buf argv;
};

/* Tables, filled by internal/loader/tables.go. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LEXICON_ENTRIES);
	__type(key, struct lex_key);
	__type(value, struct lex_val);
} lexicon SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TABLE_GENS * NODES_PER_GEN);
	__type(key, __u32);
	__type(value, struct node);
} nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TABLE_GENS * EFFECTS_PER_GEN);
	__type(key, __u32);
	__type(value, struct effect);
} effects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TABLE_GENS * PATTERNS_PER_GEN);
	__type(key, __u32);
	__type(value, struct pattern);
} patterns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TABLE_GENS * RULES_PER_GEN);
	__type(key, __u32);
	__type(value, __u8);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TABLE_GENS * ENTRIES_PER_GEN);
	__type(key, __u32);
	__type(value, __u16);
} entries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} table_gen SEC(".maps");

/*
 * Per-CPU scratch, SCRATCH_SLOTS per CPU. BPF programs run with migration disabled but, on a
 * preemptible kernel, not with preemption disabled: a second exec on the same CPU can run the
 * hook while the first is preempted inside it. Each run claims a slot with an atomic
 * compare-and-exchange, so two runs never share one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct classify_scratch);
} cls_scratch SEC(".maps");

/*
 * bpf_loop passes callbacks a pointer to the caller's stack, not a map value, so callbacks get
 * the slot number and look the scratch up again (an inlined per-CPU array lookup).
 */
struct cls_cb {
	__u32 slot;
};

static __always_inline struct classify_scratch *scratch_of(struct cls_cb *cb)
{
	__u32 slot = cb->slot;

	return bpf_map_lookup_elem(&cls_scratch, &slot);
}

static __always_inline struct classify_scratch *scratch_acquire(void)
{
	struct classify_scratch *s;
	__u32 slot;

#pragma unroll
	for (slot = 0; slot < SCRATCH_SLOTS; slot++) {
		__u32 key = slot; /* the loop counter itself must not live on the stack */

		s = bpf_map_lookup_elem(&cls_scratch, &key);
		if (!s)
			return NULL;
		if (__sync_val_compare_and_swap(&s->busy, 0, 1) == 0) {
			s->st.slot = slot;
			return s;
		}
	}
	return NULL;
}

static __always_inline void scratch_release(struct classify_scratch *s)
{
	/* Only this CPU uses the slot, so a plain store is enough. */
	*(volatile __u32 *)&s->busy = 0;
}

/*
 * One 8-byte load or store at any address. Unaligned 8-byte accesses to map values are fine
 * where the kernel has efficient unaligned access (x86-64, arm64); the verifier only enforces
 * alignment elsewhere. They go through a pointer parameter because clang takes the alignment
 * of *(__u64 *)&x[i] from x[i] (1 for bytes), and the BPF backend then splits the access into
 * eight byte loads and seven shifts and ors; from a plain __u64 pointer it takes 8.
 */
static __always_inline __u64 load_word(const void *p)
{
	return *(const __u64 *)p;
}

static __always_inline void store_word(void *p, __u64 v)
{
	*(__u64 *)p = v;
}

#define ARGV_BYTE(a, idx) ((a)->data[(idx) & ARGV_DATA_MASK])
#define ARGV_WORD(a, idx) load_word(&(a)->data[(idx) & ARGV_DATA_MASK])

/* Bytes [0, n) of a little-endian word, n in 0..8. */
static __always_inline __u64 low_bytes(__u64 w, __u32 n)
{
	if (n >= 8)
		return w;
	return w & ((1ULL << (n * 8)) - 1);
}

/* Top bit of each zero byte of w, exactly (no borrow from one byte into the next). */
static __always_inline __u64 zero_bytes(__u64 w)
{
	return ~(((w & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL) | w | 0x7f7f7f7f7f7f7f7fULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Reading argv                                                                             */

/*
 * Index of the lowest byte with its top bit set; t has only top bits set, and not none.
 * Without branches: the verifier would follow each of the eight answers separately through
 * everything that uses it. low - 1 has the low bit set in bytes 0..j (j the answer), and the
 * multiplication sums those bits into the top byte.
 */
static __always_inline __u32 lowest_flagged_byte(__u64 t)
{
	__u64 low = t & -t;

	return ((((low - 1) & 0x0101010101010101ULL) * 0x0101010101010101ULL) >> 56) - 1;
}

#define SPLIT_WORDS 16 /* words scanned per callback */

/*
 * Splits SPLIT_WORDS words from scan: every NUL in them ends a token. A word holds up to eight
 * NULs, so one callback stores many short tokens; the call is what costs, not the scan.
 *
 * The token count is read from the map again (volatile) for every NUL: a count kept in a
 * register would be a different bounded value on every path through the loops, and the
 * verifier could not prune any of them.
 */
static long argv_split_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);
	struct argv_buf *a;
	__u32 scan, nbytes, base, pos, t, w, k, tstart;
	__u64 zeros;

	if (!s)
		return 1;
	a = &s->argv;
	scan = a->scan;
	nbytes = a->nbytes;
	for (w = 0; w < SPLIT_WORDS; w++) {
		base = scan + w * 8;
		if (base >= nbytes)
			break;
		zeros = low_bytes(zero_bytes(ARGV_WORD(a, base)), nbytes - base);
		for (k = 0; k < 8 && zeros; k++) {
			pos = base + lowest_flagged_byte(zeros);
			zeros &= zeros - 1;
			t = *(volatile __u32 *)&a->ntok;
			if (t >= MAX_TOKENS) {
				a->truncated = 1;
				return 1;
			}
			tstart = *(volatile __u32 *)&a->tstart;
			/* Keep clang from dropping the mask because of the check above: the
			 * verifier does not always carry that bound to here. */
			asm volatile("" : "+r"(t));
			a->off[t & (MAX_TOKENS - 1)] = tstart;
			a->len[t & (MAX_TOKENS - 1)] = pos - tstart;
			*(volatile __u32 *)&a->ntok = t + 1;
			*(volatile __u32 *)&a->tstart = pos + 1;
		}
	}
	a->scan = scan + w * 8;
	return w < SPLIT_WORDS;
}

static __always_inline void argv_read(struct classify_scratch *s, unsigned long start,
				      unsigned long end, int user)
{
	struct argv_buf *a = &s->argv;
	struct cls_cb cb = { .slot = s->st.slot };
	__u32 n;
	long err;

	a->ntok = 0;
	a->nbytes = 0;
	a->tstart = 0;
	a->scan = 0;
	a->truncated = 0;
	a->fault = 0;
	a->total = end > start ? end - start : 0;
	if (end - start > MAX_ARGV_BYTES)
		a->truncated = 1;
	n = a->total < MAX_ARGV_BYTES ? a->total : MAX_ARGV_BYTES;
	if (n == 0)
		return;
	/* One copy of the whole block, then split it: far cheaper than a read per token. */
	if (user)
		err = bpf_probe_read_user(a->data, n, (const void *)start);
	else
		err = bpf_probe_read_kernel(a->data, n, (const void *)start);
	if (err) {
		a->fault = 1;
		return;
	}
	a->nbytes = n;
	bpf_loop(MAX_ARGV_BYTES / 8 / SPLIT_WORDS + 1, argv_split_step, &cb, 0);
	/* Bytes after the last NUL are a token cut short: argv did not fit. */
	if (a->tstart < n)
		a->truncated = 1;
}

/*
 * argv_read_user reads the argv of the current process. At sched_process_exec,
 * mm->arg_start..arg_end is the new image's argv, laid out by the kernel and not yet
 * reachable by any other thread, so what is read here is what the program will see.
 */
static __always_inline void argv_read_user(struct classify_scratch *s, unsigned long arg_start,
					   unsigned long arg_end)
{
	argv_read(s, arg_start, arg_end, 1);
}

/* argv_read_kernel reads an argv laid out the same way in kernel memory (the test wrapper). */
static __always_inline void argv_read_kernel(struct classify_scratch *s, unsigned long start,
					     unsigned long end)
{
	argv_read(s, start, end, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Table access                                                                             */

static __always_inline struct node *cls_node(struct cls_state *st, __u32 id)
{
	__u32 k = st->gen * NODES_PER_GEN + (id & (NODES_PER_GEN - 1));

	return bpf_map_lookup_elem(&nodes, &k);
}

static __always_inline __u16 cls_node_flags(struct cls_state *st, __u32 id)
{
	struct node *n = cls_node(st, id);

	return n ? n->flags : 0;
}

static __always_inline struct effect *cls_effect(struct cls_state *st, __u32 id)
{
	__u32 k = st->gen * EFFECTS_PER_GEN + (id & (EFFECTS_PER_GEN - 1));

	return bpf_map_lookup_elem(&effects, &k);
}

static __always_inline struct pattern *cls_pattern(struct cls_state *st, __u32 id)
{
	__u32 k = st->gen * PATTERNS_PER_GEN + (id & (PATTERNS_PER_GEN - 1));

	return bpf_map_lookup_elem(&patterns, &k);
}

static __always_inline __u8 cls_action(struct cls_state *st, __u32 rule)
{
	__u32 k = st->gen * RULES_PER_GEN + (rule & (RULES_PER_GEN - 1));
	__u8 *a;

	if (rule >= RULES_PER_GEN)
		return ACTION_OFF;
	a = bpf_map_lookup_elem(&rules, &k);
	return a ? *a : ACTION_OFF;
}

/* Look name argv[off .. off+len) up at the current node. */
static __always_inline struct lex_val *cls_lookup(struct classify_scratch *s, __u8 kind, __u32 off,
						  __u32 len)
{
	struct cls_state *st = &s->st;
	struct lex_key *k = &st->key;
	struct lex_val *lv;
	struct cls_memo *m;
	__u32 w;

	if (len == 0 || len > LEX_NAME_MAX)
		return NULL;
	k->node = st->gen * NODES_PER_GEN + (st->node & (NODES_PER_GEN - 1));
	k->kind = kind;
	k->len = len;
	/* The key must be zero padded: copy whole words and clear what is past the name. */
#pragma unroll
	for (w = 0; w < LEX_NAME_MAX / 8; w++) {
		__u64 v = 0;

		if (len > w * 8)
			v = low_bytes(ARGV_WORD(&s->argv, off + w * 8), len - w * 8);
		store_word(&k->name[w * 8], v);
	}
	/* A few remembered answers, by the name's first letter: a word compare is far cheaper
	 * than hashing the 36-byte key. */
	m = &st->memo[(k->name[0] ^ k->name[0] >> 3 ^ kind) & (LEX_MEMO - 1)];
	if (m->state && load_word(&m->key) == load_word(k) &&
	    load_word(&m->key.name[4]) == load_word(&k->name[4]) &&
	    load_word(&m->key.name[12]) == load_word(&k->name[12]) &&
	    load_word(&m->key.name[20]) == load_word(&k->name[20]) &&
	    *(__u32 *)&m->key.name[28] == *(__u32 *)&k->name[28])
		return m->state == 1 ? &m->val : NULL;
	lv = bpf_map_lookup_elem(&lexicon, k);
	m->key = *k;
	if (!lv) {
		m->state = 2;
		return NULL;
	}
	m->val = *lv;
	m->state = 1;
	return &m->val;
}

#define CH2(a, b) ((__u64)(a) | (__u64)(b) << 8)
#define CH4(a, b, c, d) (CH2(a, b) | CH2(c, d) << 16)
#define CH5(a, b, c, d, e) (CH4(a, b, c, d) | (__u64)(e) << 32)

/* strconv.ParseBool on argv[off .. off+len): 1 true, 0 false, -1 not a bool. */
static __always_inline int cls_parse_bool(struct argv_buf *a, __u32 off, __u32 len)
{
	__u64 w;

	if (len != 1 && len != 4 && len != 5)
		return -1;
	w = low_bytes(ARGV_WORD(a, off), len);
	switch (len) {
	case 1:
		if (w == '1' || w == 't' || w == 'T')
			return 1;
		if (w == '0' || w == 'f' || w == 'F')
			return 0;
		return -1;
	case 4:
		if (w == CH4('t', 'r', 'u', 'e') || w == CH4('T', 'R', 'U', 'E') ||
		    w == CH4('T', 'r', 'u', 'e'))
			return 1;
		return -1;
	default:
		if (w == CH5('f', 'a', 'l', 's', 'e') || w == CH5('F', 'A', 'L', 'S', 'E') ||
		    w == CH5('F', 'a', 'l', 's', 'e'))
			return 0;
		return -1;
	}
}

/* ---------------------------------------------------------------------------------------- */
/* MATCH                                                                                    */

/* argv[off .. off+n) == p->s[0 .. n), n <= PATTERN_MAX. */
static __always_inline int cls_memeq(struct argv_buf *a, __u32 off, struct pattern *p, __u32 n)
{
	__u32 w;

#pragma unroll
	for (w = 0; w < PATTERN_MAX / 8; w++) {
		__u64 x;

		if (n <= w * 8)
			break;
		x = ARGV_WORD(a, off + w * 8) ^ load_word(&p->s[w * 8]);
		if (low_bytes(x, n - w * 8))
			return 0;
	}
	return 1;
}

#define NOT_FOUND 0xffffffff

#define FIND_WORDS 4 /* per callback; more makes each verifier pass over the callback dearer */

/* Finds sc_ch in the scan window, eight bytes at a time, FIND_WORDS words per round. */
static long cls_find_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);
	__u64 pattern, hits;
	__u32 w, base, len;

	if (!s)
		return 1;
	len = s->st.sc_len;
	pattern = 0x0101010101010101ULL * s->st.sc_ch;
	for (w = 0; w < FIND_WORDS; w++) {
		base = (idx * FIND_WORDS + w) * 8;
		if (base >= len)
			return 1;
		hits = zero_bytes(ARGV_WORD(&s->argv, s->st.sc_off + base) ^ pattern);
		hits = low_bytes(hits, len - base);
		if (hits) {
			s->st.sc_res = base + lowest_flagged_byte(hits);
			return 1;
		}
	}
	return 0;
}

/* The same a byte per callback: cheap to verify where callbacks are nested deep. */
static long cls_find_byte_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);

	if (!s || idx >= s->st.sc_len)
		return 1;
	if (ARGV_BYTE(&s->argv, s->st.sc_off + idx) == s->st.sc_ch) {
		s->st.sc_res = idx;
		return 1;
	}
	return 0;
}

/*
 * Index of the first ch in argv[off .. off+len), len <= VALUE_MAX, or NOT_FOUND.
 * The verifier checks a callback again for every call site and every pass over its caller, so
 * the cost of verifying the word loop multiplies with the nesting depth: deep in MATCH
 * (deep = 1) the byte loop is used.
 */
static __always_inline __u32 cls_find(struct classify_scratch *s, struct cls_cb *cb, __u32 off,
				      __u32 len, __u8 ch, int deep)
{
	s->st.sc_off = off;
	s->st.sc_len = len;
	s->st.sc_ch = ch;
	s->st.sc_res = NOT_FOUND;
	if (deep)
		bpf_loop(VALUE_MAX, cls_find_byte_step, cb, 0);
	else
		bpf_loop(VALUE_MAX / 8 / FIND_WORDS, cls_find_step, cb, 0);
	return s->st.sc_res;
}

#define PATH_UNKNOWN 0
#define PATH_SENSITIVE 1
#define PATH_HARMLESS 2
#define PATH_COMPARE 3

static long cls_strip_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);
	__u32 L;

	if (!s)
		return 1;
	L = s->st.c_L;
	if (L > 1 && ARGV_BYTE(&s->argv, s->st.c_off + L - 1) == '/') {
		s->st.c_L = L - 1;
		return 0;
	}
	return 1;
}

#define W_SLASH 0x2f2f2f2f2f2f2f2fULL /* "////////" */
#define W_DOT 0x2e2e2e2e2e2e2e2eULL   /* "........" */

/* The top bit of byte p of a word, p in 0..7; 0 for any other p. */
static __always_inline __u64 byte_flag(__u32 p)
{
	return p < 8 ? 0x80ULL << (p * 8) : 0;
}

/*
 * Finds "//", "/./", "/../", a trailing "/." or "/.." in the candidate's first c_L bytes, eight
 * positions idx (with idx + 1 < c_L) per round: byte j of each mask stands for idx = base + j.
 * Bytes at c_L and after are not the candidate's; they only decide a position that the end
 * decides anyway (a "/." right before c_L).
 */
static long cls_canon_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);
	struct argv_buf *a;
	__u32 L, off, base = idx * 8;
	__u64 sl0, w1, w2, nc;

	if (!s)
		return 1;
	a = &s->argv;
	L = s->st.c_L;
	off = s->st.c_off + base;
	if (base + 1 >= L)
		return 1;
	sl0 = zero_bytes(ARGV_WORD(a, off) ^ W_SLASH);
	if (!sl0)
		return 0;
	w1 = ARGV_WORD(a, off + 1);
	w2 = ARGV_WORD(a, off + 2);
	nc = zero_bytes(w1 ^ W_SLASH) |
	     (zero_bytes(w1 ^ W_DOT) & (zero_bytes(w2 ^ W_SLASH) | byte_flag(L - 2 - base) |
					(zero_bytes(w2 ^ W_DOT) &
					 (zero_bytes(ARGV_WORD(a, off + 3) ^ W_SLASH) |
					  byte_flag(L - 3 - base)))));
	if (!low_bytes(sl0 & nc, L - 1 - base))
		return 0;
	s->st.c_path = PATH_SENSITIVE;
	return 1;
}

/* The pattern-independent part of SENSITIVE(s, p) for the current candidate. */
static __always_inline void cls_path_class(struct classify_scratch *s, struct cls_cb *cb)
{
	struct cls_state *st = &s->st;
	__u32 off = st->c_off, len = st->c_len;
	__u8 c0;

	if (len == 0) {
		st->c_path = PATH_HARMLESS;
		return;
	}
	c0 = ARGV_BYTE(&s->argv, off);
	if (c0 != '/') {
		/* relative: "./x" and "a/b" are paths, a bare word is a volume name */
		if (c0 == '.' || cls_find(s, cb, off, len, '/', 1) != NOT_FOUND)
			st->c_path = PATH_SENSITIVE;
		else
			st->c_path = PATH_HARMLESS;
		return;
	}
	st->c_L = len;
	bpf_loop(VALUE_MAX, cls_strip_step, cb, 0);
	if (st->c_L <= 1) {
		st->c_path = PATH_SENSITIVE;
		return;
	}
	st->c_path = PATH_COMPARE;
	bpf_loop(VALUE_MAX / 8, cls_canon_step, cb, 0);
}

/*
 * PMATCH of pattern p against the candidate, or (c_keys) p == the lowered key for KEYMATCH.
 * Every case comes down to one comparison of n bytes at aoff with p->s: the comparison is
 * inlined once, which keeps the verifier's work small.
 */
static long cls_pat_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);
	struct cls_state *st;
	struct argv_buf *a;
	struct pattern *p;
	__u32 off, len, plen, aoff, n, L;

	if (!s)
		return 1;
	st = &s->st;
	a = &s->argv;
	if (idx >= st->m_npat)
		return 1;
	p = cls_pattern(st, st->m_pat + idx);
	if (!p)
		return 1;
	off = st->c_off;
	len = st->c_len;
	plen = p->len;
	if (plen > PATTERN_MAX)
		return 0;
	aoff = off;
	n = plen;
	if (st->c_keys) {
		if (p->kind != PAT_KEY || plen != st->l_o)
			return 0;
		aoff = LKEY_OFF;
		goto compare;
	}
	switch (p->kind) {
	case PAT_EXACT:
		if (len != plen)
			return 0;
		break;
	case PAT_PREFIX:
		if (len < plen)
			return 0;
		break;
	case PAT_SUFFIX:
		if (len < plen)
			return 0;
		aoff = off + len - plen;
		break;
	case PAT_PATH:
		if (st->c_path == PATH_UNKNOWN)
			cls_path_class(s, cb);
		if (st->c_path == PATH_SENSITIVE)
			goto hit;
		if (st->c_path != PATH_COMPARE)
			return 0;
		L = st->c_L;
		if (L > plen) {
			/* s under p */
			if (ARGV_BYTE(a, off + plen) != '/')
				return 0;
		} else if (L < plen) {
			/* s an ancestor of p */
			if (p->s[L & (PATTERN_MAX - 1)] != '/')
				return 0;
			n = L;
		}
		break;
	default:
		return 0; /* PAT_KEY only names keys */
	}
compare:
	if (!cls_memeq(a, aoff, p, n))
		return 0;
hit:
	st->c_hit = 1;
	return 1;
}

static __always_inline int cls_anypat(struct classify_scratch *s, struct cls_cb *cb, __u32 off,
				      __u32 len)
{
	struct cls_state *st = &s->st;

	st->c_off = off;
	st->c_len = len;
	st->c_path = PATH_UNKNOWN;
	st->c_hit = 0;
	st->c_keys = 0;
	bpf_loop(255, cls_pat_step, cb, 0);
	return st->c_hit;
}

/*
 * strings.ToLower of a mount key into data[LKEY_OFF ..). Go lowers Unicode: besides ASCII
 * letters only U+0130 (İ) and U+212A (Kelvin sign) lower to ASCII ('i', 'k'); every other
 * non-ASCII byte leaves a non-ASCII byte in the result, which no (ASCII) key pattern can equal,
 * so the key is marked as matching nothing (l_o = PATTERN_MAX + 1).
 */
static long cls_lower_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);
	struct cls_state *st;
	struct argv_buf *a;
	__u32 k, o, off;
	__u8 c;

	if (!s)
		return 1;
	st = &s->st;
	a = &s->argv;
	k = st->l_k;
	o = st->l_o;
	if (k >= st->l_len)
		return 1;
	if (o >= PATTERN_MAX)
		goto nomatch;
	off = st->l_off + k;
	c = ARGV_BYTE(a, off);
	if (c < 0x80) {
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		k += 1;
	} else if (c == 0xc4 && k + 1 < st->l_len && ARGV_BYTE(a, off + 1) == 0xb0) {
		c = 'i';
		k += 2;
	} else if (c == 0xe2 && k + 2 < st->l_len && ARGV_BYTE(a, off + 1) == 0x84 &&
		   ARGV_BYTE(a, off + 2) == 0xaa) {
		c = 'k';
		k += 3;
	} else {
		goto nomatch;
	}
	a->data[(LKEY_OFF + o) & ARGV_DATA_MASK] = c;
	st->l_k = k;
	st->l_o = o + 1;
	return 0;
nomatch:
	st->l_o = PATTERN_MAX + 1;
	return 1;
}

/* KEYMATCH(lower(argv[off .. off+len))). */
static __always_inline int cls_keymatch(struct classify_scratch *s, struct cls_cb *cb, __u32 off,
					__u32 len)
{
	struct cls_state *st = &s->st;

	st->l_off = off;
	st->l_len = len;
	st->l_k = 0;
	st->l_o = 0;
	bpf_loop(VALUE_MAX, cls_lower_step, cb, 0);
	if (st->l_o > PATTERN_MAX)
		return 0;
	st->c_keys = 1;
	st->c_hit = 0;
	bpf_loop(255, cls_pat_step, cb, 0);
	st->c_keys = 0;
	return st->c_hit;
}

#define W_COMMA 0x2c2c2c2c2c2c2c2cULL /* ",,,,,,,," */
#define W_EQ 0x3d3d3d3d3d3d3d3dULL    /* "========" */
#define W_QUOTE 0x2222222222222222ULL /* the '"' byte eight times */

/*
 * The next byte of a comma separated value that does something, from m_pos: a ',' (or the end,
 * m_len, which ends the last field) or the first '=' of a field; the bytes in between are
 * passed eight at a time. A '"' anywhere makes the value match, whatever its fields do, so
 * one in the bytes looked at ends the scan at once.
 */
static long cls_csv_step(__u32 i, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);
	struct cls_state *st;
	__u32 fstart, eq, p, idx;
	__u64 w, ev;
	__u8 c = ',';
	int hit;

	if (!s)
		return 1;
	st = &s->st;
	p = st->m_pos;
	if (p > st->m_len)
		return 1;
	w = ARGV_WORD(&s->argv, st->m_off + p);
	if (low_bytes(zero_bytes(w ^ W_QUOTE), st->m_len - p)) {
		/* Docker reads these with encoding/csv; quoting is not modelled: match. */
		st->m_hit = 1;
		return 1;
	}
	ev = zero_bytes(w ^ W_COMMA);
	if (st->m_eq == NOT_FOUND)
		ev |= zero_bytes(w ^ W_EQ);
	ev = low_bytes(ev, st->m_len - p);
	if (ev) {
		idx = p + lowest_flagged_byte(ev);
	} else if (p + 8 > st->m_len) {
		idx = st->m_len;
	} else {
		st->m_pos = p + 8;
		return 0;
	}
	st->m_pos = idx + 1;
	if (idx < st->m_len)
		c = ARGV_BYTE(&s->argv, st->m_off + idx);
	if (c == '=' && st->m_eq == NOT_FOUND)
		st->m_eq = idx;
	if (c != ',')
		return 0;
	fstart = st->m_fstart;
	eq = st->m_eq;
	st->m_fstart = idx + 1;
	st->m_eq = NOT_FOUND;
	if (fstart > idx)
		return 0;
	if (st->m_extract == EXTRACT_CSV_FIELD) {
		/* "key=rest": the key must be one of the PAT_KEY patterns, then rest is matched */
		if (eq == NOT_FOUND || eq < fstart || eq >= idx ||
		    !cls_keymatch(s, cb, st->m_off + fstart, eq - fstart))
			return 0;
		fstart = eq + 1;
	}
	/* One call site for cls_anypat: the verifier checks a callback once per call site. */
	hit = cls_anypat(s, cb, st->m_off + fstart, idx - fstart);
	if (hit) {
		st->m_hit = 1;
		return 1;
	}
	return 0;
}

/* MATCH(effect, argv[off .. off+len)). */
static __always_inline int cls_match(struct classify_scratch *s, struct cls_cb *cb,
				     struct effect *e, __u32 off, __u32 len)
{
	struct cls_state *st = &s->st;
	__u32 c;

	if (e->npat == 0 || len > VALUE_MAX)
		return 1;
	st->m_pat = e->pat;
	st->m_npat = e->npat;
	st->m_extract = e->extract;
	switch (e->extract) {
	case EXTRACT_WHOLE:
		break;
	case EXTRACT_VOLUME_SRC:
	case EXTRACT_KV_KEY:
		/* the source before ':' (none: no bind), the key before '=' (none: all of it) */
		c = cls_find(s, cb, off, len, e->extract == EXTRACT_VOLUME_SRC ? ':' : '=', 0);
		if (c == NOT_FOUND && e->extract == EXTRACT_VOLUME_SRC)
			return 0;
		if (c != NOT_FOUND)
			len = c;
		break;
	case EXTRACT_CSV_FIELD:
	case EXTRACT_CSV_ELEM:
		st->m_off = off;
		st->m_len = len;
		st->m_fstart = 0;
		st->m_pos = 0;
		st->m_eq = NOT_FOUND;
		st->m_hit = 0;
		bpf_loop(VALUE_MAX + 1, cls_csv_step, cb, 0);
		return st->m_hit;
	default:
		return 1; /* an extractor this interpreter does not know: be conservative */
	}
	return cls_anypat(s, cb, off, len);
}

/* ---------------------------------------------------------------------------------------- */
/* The interpreter                                                                          */

static __always_inline void cls_trigger(struct cls_state *st, __u8 rule, __u16 effect,
					__u16 token)
{
	__u8 action = cls_action(st, rule);
	struct cls_trigger *t;

	if (action == ACTION_BLOCK)
		t = &st->first_block;
	else if (action == ACTION_AUDIT)
		t = &st->first_audit;
	else
		return;
	if (t->set)
		return;
	t->set = 1;
	t->rule = rule;
	t->effect = effect;
	t->token = token;
}

static __always_inline void cls_result(struct cls_state *st, __u8 verdict, __u8 help, __u8 rule,
				       __u16 effect, __u16 token)
{
	st->res.verdict = verdict;
	st->res.rule = rule;
	st->res.help = help;
	st->res.pad = 0;
	st->res.node = st->node;
	st->res.effect = effect;
	st->res.token = token;
	st->res.pad2 = 0;
	st->done = 1;
}

static __always_inline void cls_result_trigger(struct cls_state *st, __u8 verdict,
					       struct cls_trigger *t)
{
	cls_result(st, verdict, 0, t->rule, t->effect, t->token);
}

static __always_inline void cls_parse_error(struct cls_state *st, __u32 tok)
{
	cls_trigger(st, RULE_UNKNOWN, 0, tok);
	if (st->first_block.set)
		cls_result_trigger(st, VERDICT_BLOCK, &st->first_block);
	else if (st->first_audit.set)
		cls_result_trigger(st, VERDICT_AUDIT, &st->first_audit);
	else
		cls_result(st, VERDICT_ALLOW, 0, 0, 0, 0);
}

static __always_inline void cls_finish(struct cls_state *st)
{
	__u8 leaf_action = ACTION_OFF, leaf_rule = 0;
	__u16 leaf = 0;
	struct node *n;
	struct effect *e;

	if (st->help) {
		cls_result(st, VERDICT_ALLOW, 1, 0, 0, 0);
		return;
	}
	if (st->stray) {
		/* the command would fail with "unknown command" */
		cls_parse_error(st, st->stray);
		return;
	}
	n = cls_node(st, st->node);
	if (n && n->leaf_effect) {
		e = cls_effect(st, n->leaf_effect);
		if (e) {
			leaf = n->leaf_effect;
			leaf_rule = e->rule;
			leaf_action = cls_action(st, leaf_rule);
		}
	}
	if (leaf && leaf_action == ACTION_BLOCK)
		cls_result(st, VERDICT_BLOCK, 0, leaf_rule, leaf, st->leaf_tok);
	else if (st->first_block.set)
		cls_result_trigger(st, VERDICT_BLOCK, &st->first_block);
	else if (leaf && leaf_action == ACTION_AUDIT)
		cls_result(st, VERDICT_AUDIT, 0, leaf_rule, leaf, st->leaf_tok);
	else if (st->first_audit.set)
		cls_result_trigger(st, VERDICT_AUDIT, &st->first_audit);
	else
		cls_result(st, VERDICT_ALLOW, 0, 0, 0, 0);
}

/*
 * APPLY(effect, bool b | value argv[off .. off+len), token tok).
 * A value flag is only noted here and applied by cls_step once the token is parsed: a token
 * has at most one value, and MATCH, the bulk of the program, is then inlined at a single place
 * instead of at every flag form.
 */
static __always_inline void cls_apply(struct classify_scratch *s, __u16 id, int is_value, int b,
				      __u32 off, __u32 len, __u32 tok)
{
	struct cls_state *st = &s->st;
	struct effect *e;

	if (id == 0)
		return;
	if (is_value) {
		st->v_effect = id;
		st->v_off = off;
		st->v_len = len;
		st->v_tok = tok;
		return;
	}
	e = cls_effect(st, id);
	if (!e)
		return;
	if (e->kind == EFFECT_HELP)
		st->help = b;
	else if (b)
		cls_trigger(st, e->rule, id, tok);
}

static __always_inline void cls_apply_value(struct classify_scratch *s, struct cls_cb *cb)
{
	struct cls_state *st = &s->st;
	__u16 id = st->v_effect;
	struct effect *e;

	st->v_effect = 0;
	e = cls_effect(st, id);
	/* help is a bool flag everywhere; a value-taking help flag has no effect */
	if (!e || e->kind == EFFECT_HELP)
		return;
	if (cls_match(s, cb, e, st->v_off, st->v_len))
		cls_trigger(st, e->rule, id, st->v_tok);
}

static __always_inline void cls_positional(struct classify_scratch *s, __u32 i, __u32 off,
					   __u32 len)
{
	struct cls_state *st = &s->st;
	__u16 flags = cls_node_flags(st, st->node), nflags;
	struct lex_val *lv;

	if (!(flags & NODE_HAS_CHILDREN) || st->stray) {
		/* A leaf (or a node a stray word made the command); not interspersed: the rest
		 * are arguments. */
		if (!(flags & NODE_INTERSPERSED))
			cls_finish(st);
		return;
	}
	lv = cls_lookup(s, LEX_WORD, off, len);
	if (!lv) {
		if (flags & NODE_ENTRY) {
			cls_parse_error(st, i); /* unknown command or plugin */
			return;
		}
		/* cobra's Traverse makes this node the command and the rest its arguments: it
		 * only prints help (when help is set at the end) or fails. Flags still count. */
		st->stray = i;
		if (!(flags & NODE_INTERSPERSED))
			cls_finish(st);
		return;
	}
	if (flags & NODE_HELP_TOPIC) {
		cls_result(st, VERDICT_ALLOW, 1, 0, 0, 0);
		return;
	}
	st->node = lv->target;
	st->leaf_tok = i;
	nflags = cls_node_flags(st, st->node);
	if (nflags & NODE_HELP_LOCAL)
		st->help = 0;
	if (nflags & NODE_STOP_ALLOW)
		cls_result(st, VERDICT_ALLOW, 0, 0, 0, 0);
}

/* Where the value of the flag at token i starts when it is the next token; 0 if none. */
static __always_inline int cls_next_value(struct cls_state *st, struct argv_buf *a, __u32 i,
					  __u32 *off, __u32 *len)
{
	__u32 k;

	if (i + 1 >= st->n)
		return 0;
	k = (i + 1) & (MAX_TOKENS - 1);
	*off = a->off[k];
	*len = a->len[k];
	st->i = i + 1;
	return 1;
}

/* One letter of a shorthand cluster "-abc" at token t_idx; 1 when the cluster is done. */
static __always_inline long cls_cluster_letter(struct classify_scratch *s)
{
	struct cls_state *st;
	struct argv_buf *a;
	struct lex_val *lv;
	__u32 j, off, len, i, roff, rlen;
	__u16 target;
	__u8 takes_value;
	int b = 1, is_value = 0, more = 0;

	if (!s)
		return 1;
	st = &s->st;
	a = &s->argv;
	j = st->j;
	off = st->t_off;
	len = st->t_len;
	i = st->t_idx;
	if (j >= len)
		return 1;
	/* pflag drops the rest of a cluster that continues with "test." (go test flags) */
	if (len - j >= 5 && low_bytes(ARGV_WORD(a, off + j), 5) == CH5('t', 'e', 's', 't', '.'))
		return 1;
	if (j >= 1 + CLUSTER_MAX)
		goto parse_error;
	lv = cls_lookup(s, LEX_SHORT, off + j, 1);
	if (!lv)
		goto parse_error;
	target = lv->target;
	takes_value = lv->takes_value;
	roff = off + j + 1;
	rlen = len - j - 1;
	if (rlen >= 2 && ARGV_BYTE(a, roff) == '=') {
		/* "-x=v" */
		if (takes_value) {
			is_value = 1;
			roff++;
			rlen--;
		} else {
			b = cls_parse_bool(a, roff + 1, rlen - 1);
			if (b < 0)
				goto parse_error;
		}
	} else if (!takes_value) {
		more = j + 1 < len;
		st->j = j + 1;
	} else if (rlen > 0) {
		is_value = 1; /* "-xvalue", also "-x=" */
	} else {
		if (!cls_next_value(st, a, i, &roff, &rlen))
			goto parse_error;
		is_value = 1;
	}
	cls_apply(s, target, is_value, b, roff, rlen, i);
	return !more;
parse_error:
	cls_parse_error(st, i);
	return 1;
}

static long cls_cluster_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);

	return s ? cls_cluster_letter(s) : 1;
}

static __always_inline void cls_long_flag(struct classify_scratch *s, struct cls_cb *cb, __u32 i,
					  __u32 off, __u32 len)
{
	struct cls_state *st = &s->st;
	struct argv_buf *a = &s->argv;
	struct lex_val *lv;
	__u32 eq, name_len, voff = 0, vlen = 0;
	__u16 target;
	int b = 1;

	/*
	 * A name longer than LEX_NAME_MAX is never found, so look no further for the '='.
	 * (A bpf_loop, not an unrolled loop: the verifier would follow every position of the
	 * '=' separately through all that comes after.)
	 */
	eq = cls_find(s, cb, off + 2, len - 2 < LEX_NAME_MAX + 1 ? len - 2 : LEX_NAME_MAX + 1, '=', 0);
	name_len = eq != NOT_FOUND ? eq : len - 2;
	lv = cls_lookup(s, LEX_LONG, off + 2, name_len);
	if (!lv)
		goto parse_error;
	target = lv->target;
	if (lv->takes_value) {
		if (eq == NOT_FOUND) {
			if (!cls_next_value(st, a, i, &voff, &vlen))
				goto parse_error;
		} else {
			voff = off + 3 + eq;
			vlen = len - 3 - eq;
		}
		cls_apply(s, target, 1, 0, voff, vlen, i);
		return;
	}
	if (eq != NOT_FOUND) {
		b = cls_parse_bool(a, off + 3 + eq, len - 3 - eq);
		if (b < 0)
			goto parse_error;
	}
	cls_apply(s, target, 0, b, 0, 0, i);
	return;
parse_error:
	cls_parse_error(st, i);
}

static long cls_step(__u32 idx, struct cls_cb *cb)
{
	struct classify_scratch *s = scratch_of(cb);
	struct cls_state *st;
	struct argv_buf *a;
	__u32 i, off, len;
	__u16 flags;
	__u8 c0, c1;

	if (!s)
		return 1;
	st = &s->st;
	a = &s->argv;
	if (st->done || st->i >= st->n)
		return 1;
	i = st->i & (MAX_TOKENS - 1);
	off = a->off[i];
	len = a->len[i];
	c0 = ARGV_BYTE(a, off);
	c1 = ARGV_BYTE(a, off + 1);
	if (st->dashdash || st->root_dd || len < 2 || c0 != '-') {
		st->root_dd = 0;
		cls_positional(s, i, off, len);
	} else if (len == 2 && c1 == '-') {
		flags = cls_node_flags(st, st->node);
		if (!(flags & NODE_HAS_CHILDREN))
			st->dashdash = 1;
		else if (flags & NODE_ENTRY)
			st->root_dd = 1; /* the next token is the command word, whatever it is */
		else
			cls_parse_error(st, i); /* cobra Traverse: "--" eats the next word */
	} else if (c1 == '-') {
		cls_long_flag(s, cb, i, off, len);
	} else {
		st->t_idx = i;
		st->t_off = off;
		st->t_len = len;
		st->j = 1;
		/* Most clusters are one letter ("-e"): no callback for those. */
		if (len > 2 || !cls_cluster_letter(s))
			bpf_loop(CLUSTER_MAX + 1, cls_cluster_step, cb, 0);
	}
	if (st->v_effect && !st->done)
		cls_apply_value(s, cb);
	if (st->done)
		return 1;
	st->i++;
	return 0;
}

/*
 * classify runs the interpreter of docs/tables.md on s->argv for binary bin (BIN_*).
 * An unknown bin is VERDICT_NOT_CLIENT; tables not loaded yet is VERDICT_UNDECIDED.
 */
static __always_inline void classify(struct classify_scratch *s, __u32 bin, struct result *out)
{
	struct cls_state *st = &s->st;
	struct cls_cb cb = { .slot = st->slot };
	__u32 zero = 0, k, *gen;
	__u16 *entry;

	__builtin_memset(&st->res, 0, sizeof(st->res));
	__builtin_memset(&st->first_block, 0, sizeof(st->first_block));
	__builtin_memset(&st->first_audit, 0, sizeof(st->first_audit));
	st->help = 0;
	st->dashdash = 0;
	st->root_dd = 0;
	st->done = 0;
	st->leaf_tok = 0;
	st->node = 0;
	st->stray = 0;
	st->v_effect = 0;
	for (k = 0; k < LEX_MEMO; k++)
		st->memo[k].state = 0;
	gen = bpf_map_lookup_elem(&table_gen, &zero);
	st->gen = gen ? *gen & 1 : 0;
	if (bin >= NUM_BINARIES) {
		st->res.verdict = VERDICT_NOT_CLIENT;
		goto out;
	}
	k = st->gen * ENTRIES_PER_GEN + bin;
	entry = bpf_map_lookup_elem(&entries, &k);
	st->res.node = entry ? *entry : 0;
	st->node = st->res.node;
	if (!st->node || s->argv.truncated || s->argv.fault) {
		st->res.verdict = VERDICT_UNDECIDED;
		goto out;
	}
	st->n = s->argv.ntok;
	st->i = 1;
	bpf_loop(MAX_TOKENS, cls_step, &cb, 0);
	if (!st->done)
		cls_finish(st);
out:
	*out = st->res;
}

#endif /* DOCKWATCH_CLASSIFY_H */

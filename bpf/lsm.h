/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * LSM mode and anti-tamper (DESIGN.md §1.4, §1.5, §1.8).
 *
 *   lsm/unix_stream_connect   the connect gate of lsm mode: a supervised process without an
 *                             ALLOW verdict may not connect to a protected socket. The check
 *                             is on the listening socket itself (its inode, or the path it
 *                             was bound to), under the kernel's lock on it, so no path trick
 *                             (symlink, hard link, bind mount, /proc/PID/root, io_uring) and no
 *                             second thread gets around it.
 *   lsm/ptrace_access_check   a supervised process may not ptrace, open /proc/PID/mem of,
 *                             process_vm_readv/writev or pidfd_getfd a trusted client: every
 *                             one of those asks ptrace_may_access(PTRACE_MODE_ATTACH_*).
 *   env_tampered()            called by the exec hook in every mode: LD_PRELOAD, LD_AUDIT or
 *                             LD_LIBRARY_PATH in a trusted client's environment is BLOCK.
 *
 * The LSM programs are loaded only in lsm mode (internal/loader/lsm.go); the env check is part
 * of tp_btf/sched_process_exec and runs everywhere.
 *
 * Included by dockwatch.bpf.c before the exec hook, after its maps and helpers.
 */
#ifndef DOCKWATCH_LSM_H
#define DOCKWATCH_LSM_H

#define EPERM 1
#define PTRACE_MODE_ATTACH 0x02

/*
 * Event kind of a denied ptrace-class access. The tracer is the event's process; sock_ino
 * holds the target's tgid, sock_dev the ptrace mode asked for, bin and verdict the target's.
 */
#define EVENT_TAMPER 3

/* event.flags of an exec: BLOCK because of the trusted client's environment. */
#define EVENT_F_TAMPERED_ENV 64

/* Defined further down in dockwatch.bpf.c. */
static __always_inline int read_sun_path(struct sock_path *key, const void *sun_path, __u64 len,
					 int user);
static __always_inline void emit_connect(struct task_struct *task, struct sock_path *key,
					 __u8 verdict, __u8 action, __u8 flags, struct file_id *sock);

/* Fields kernel.h does not declare, as "___lsm" flavours (libbpf drops the suffix). */
struct mm_struct___lsm {
	unsigned long env_start;
	unsigned long env_end;
} __kernel_struct;

struct sockaddr_un___lsm {
	unsigned short sun_family;
	char sun_path[SUN_PATH_MAX];
} __kernel_struct;

struct unix_address___lsm {
	int len; /* of name: sun_family plus the path bytes */
	struct sockaddr_un___lsm name[];
} __kernel_struct;

struct unix_sock___lsm {
	struct path path;
	struct unix_address___lsm *addr;
} __kernel_struct;

/* ---------------------------------------------------------------------------------------- */
/* Environment of a trusted client                                                          */

/*
 * The environment is read in chunks into the classifier's scratch buffer (before argv is read
 * into it). Chunk k starts one byte before k * ENV_CHUNK, so the NUL that ends the last string
 * of a chunk is seen again at the start of the next one; ENV_OVERLAP more bytes are read than
 * scanned, so a variable name that starts inside a chunk is compared whole. Both loops are
 * bpf_loop callbacks, which the verifier checks once instead of once per iteration.
 */
#define ENV_CHUNK 8192
#define ENV_OVERLAP 32
#define ENV_MAX_BYTES (8 * ENV_CHUNK)

/* Little-endian words of the names that make the dynamic loader run foreign code. */
#define ENV_W_LD_PRELO 0x4f4c4552505f444cULL /* "LD_PRELO" */
#define ENV_W_LD_AUDIT 0x54494455415f444cULL /* "LD_AUDIT" */
#define ENV_W_LD_LIBRA 0x415242494c5f444cULL /* "LD_LIBRA" */
#define ENV_W_RY_PATH_ 0x3d485441505f5952ULL /* "RY_PATH=" */
#define ENV_W3_AD_EQ 0x3d4441ULL	     /* "AD=" */

struct env_cb {
	__u64 start; /* mm->env_start */
	__u64 total; /* bytes of environment */
	__u32 slot;
	__u8 found;  /* a loader variable is set */
	__u8 done;   /* the chunk was scanned to its limit */
	__u8 fault;  /* a read failed */
	__u8 complete; /* every chunk was scanned */
};

/*
 * Whether the string at buffer index q sets one of the loader variables to something (an empty
 * value loads nothing). A string shorter than a name ends in a NUL inside the buffer, which
 * no name byte matches, so bytes after the buffer's end never decide a match.
 */
static __always_inline int env_var_tampers(struct argv_buf *a, __u32 q)
{
	__u64 w0 = ARGV_WORD(a, q), w1 = ARGV_WORD(a, q + 8);

	if (w0 == ENV_W_LD_PRELO)
		return (w1 & 0xffffff) == ENV_W3_AD_EQ && ((w1 >> 24) & 0xff) != 0;
	if (w0 == ENV_W_LD_AUDIT)
		return (w1 & 0xff) == '=' && ((w1 >> 8) & 0xff) != 0;
	if (w0 == ENV_W_LD_LIBRA && w1 == ENV_W_RY_PATH_)
		return ARGV_BYTE(a, q + 16) != 0;
	return 0;
}

#define ENV_WORDS 16 /* words scanned per callback */
#define ENV_W_L 0x4c4c4c4c4c4c4c4cULL /* "LLLLLLLL" */
#define ENV_W_D 0x4444444444444444ULL /* "DDDDDDDD" */

/*
 * ENV_WORDS words from the scan position: every loader variable starts with "LD", so only a
 * string that starts with "LD" (right after a NUL below limit) is looked at, and the scan goes
 * on after it. The position is kept in the scratch map (argv.scan, unused until argv is read),
 * not in *cb on the stack: the verifier tracks a stack value exactly and would check the
 * callback again for every position it can end at.
 */
static long env_word_step(__u32 idx, struct env_cb *cb)
{
	__u32 slot = cb->slot, limit, base, w, pos;
	struct classify_scratch *s;
	struct argv_buf *a;
	__u64 zeros;

	s = bpf_map_lookup_elem(&cls_scratch, &slot);
	if (!s)
		return 1;
	a = &s->argv;
	base = a->scan;
	limit = a->limit;
	for (w = 0; w < ENV_WORDS; w++, base += 8) {
		if (base >= limit) {
			cb->done = 1;
			return 1;
		}
		/* byte j flagged: data[base+j] is NUL, data[base+j+1..+2] is "LD" */
		zeros = zero_bytes(ARGV_WORD(a, base));
		if (!zeros)
			continue;
		zeros &= zero_bytes(ARGV_WORD(a, base + 1) ^ ENV_W_L) &
			 zero_bytes(ARGV_WORD(a, base + 2) ^ ENV_W_D);
		if (!zeros)
			continue;
		pos = base + lowest_flagged_byte(zeros) + 1;
		/* A NUL at or after limit is the next chunk's (or past the end). */
		if (pos > limit) {
			cb->done = 1;
			return 1;
		}
		if (pos < a->nbytes && env_var_tampers(a, pos)) {
			cb->found = 1;
			return 1;
		}
		a->scan = pos;
		return 0;
	}
	a->scan = base;
	return 0;
}

/* Chunk idx: read it and scan it. */
static long env_chunk_step(__u32 idx, struct env_cb *cb)
{
	__u32 slot = cb->slot, n;
	struct classify_scratch *s;
	struct argv_buf *a;
	__u64 off = idx ? (__u64)idx * ENV_CHUNK - 1 : 0;

	if (off >= cb->total) {
		cb->complete = 1;
		return 1;
	}
	s = bpf_map_lookup_elem(&cls_scratch, &slot);
	if (!s)
		return 1;
	a = &s->argv;
	n = cb->total - off < ENV_CHUNK + ENV_OVERLAP ? cb->total - off : ENV_CHUNK + ENV_OVERLAP;
	/* Keep the bound in the register the helper gets, whatever clang reorders. */
	asm volatile("" : "+r"(n));
	if (n > ENV_CHUNK + ENV_OVERLAP)
		return 1;
	if (bpf_probe_read_user(a->data, n, (const void *)(cb->start + off))) {
		cb->fault = 1;
		return 1;
	}
	/* The first string of the environment has no NUL before it. */
	if (idx == 0 && env_var_tampers(a, 0)) {
		cb->found = 1;
		return 1;
	}
	/* In the map, not in *cb: the verifier would tell each chunk's bounds apart. */
	a->scan = 0;
	a->nbytes = n;
	a->limit = n < ENV_CHUNK ? n : ENV_CHUNK;
	cb->done = 0;
	/* Each round passes ENV_WORDS words or a string that starts with "LD" (two bytes at
	 * least, with its NUL). */
	bpf_loop(ENV_CHUNK / 8 / ENV_WORDS + ENV_CHUNK / 2 + 1, env_word_step, cb, 0);
	return cb->found || !cb->done;
}

/*
 * env_tampered reads the new image's environment (mm->env_start..env_end, laid out by the
 * kernel at exec and not yet reachable by any thread) and says whether it sets a loader
 * variable. An environment that cannot be read or is longer than ENV_MAX_BYTES is treated as
 * tampered: a variable could hide past the part that was looked at. Clobbers s->argv.
 */
static __always_inline int env_tampered(struct classify_scratch *s, struct task_struct *task)
{
	struct mm_struct___lsm *mm = (void *)task->mm;
	unsigned long start = mm->env_start, end = mm->env_end;
	struct env_cb cb = { .slot = s->st.slot };

	if (end <= start)
		return 0;
	cb.start = start;
	cb.total = end - start;
	if (cb.total > ENV_MAX_BYTES)
		return 1;
	bpf_loop(ENV_MAX_BYTES / ENV_CHUNK + 2, env_chunk_step, &cb, 0);
	return cb.found || cb.fault || !cb.complete;
}

/* ---------------------------------------------------------------------------------------- */
/* LSM mode                                                                                 */

/*
 * Whether a listening unix socket is a protected one: by the inode of the file it was bound to,
 * or by the path it was bound to (a dockerd restarted since the last reload bound a new inode
 * at the same path). Fills *id and *key for the event.
 */
static __always_inline int listener_protected(struct sock *other, struct file_id *id,
					      struct sock_path *key)
{
	struct unix_sock___lsm *u = (void *)other;
	struct unix_address___lsm *addr;
	struct inode *inode;
	int len;

	inode = BPF_CORE_READ(u, path.dentry, d_inode);
	if (inode) {
		id->ino = BPF_CORE_READ(inode, i_ino);
		id->dev = BPF_CORE_READ(inode, i_sb, s_dev);
		if (bpf_map_lookup_elem(&protected_inodes, id))
			return 1;
	}
	addr = BPF_CORE_READ(u, addr);
	if (!addr)
		return 0;
	len = BPF_CORE_READ(addr, len);
	if (len <= (int)sizeof(unsigned short))
		return 0;
	if (!read_sun_path(key, &addr->name[0].sun_path, len - sizeof(unsigned short), 0))
		return 0;
	return bpf_map_lookup_elem(&protected_paths, key) != NULL;
}

SEC("lsm/unix_stream_connect")
int BPF_PROG(dw_lsm_connect, struct sock *sock, struct sock *other, struct sock *newsk, int ret)
{
	struct task_struct *task;
	struct file_id id = {};
	struct sock_path key = {};
	struct proc_state *st;
	__u8 verdict = 0;

	/* Another LSM said no already. */
	if (ret)
		return ret;
	task = bpf_get_current_task_btf();
	st = supervised_state(task, 0);
	if (!st && !uid_supervised(task))
		return 0;
	if (st)
		verdict = st->verdict;
	if (verdict_allows(verdict))
		return 0;
	if (!listener_protected(other, &id, &key))
		return 0;
	if (dw_cfg.gate_audit) {
		emit_connect(task, &key, verdict, ACTION_NONE, EVENT_F_AUDIT, &id);
		return 0;
	}
	emit_connect(task, &key, verdict, ACTION_DENIED, 0, &id);
	return -EPERM;
}

static __always_inline void emit_tamper(struct task_struct *task, struct task_struct *target,
					struct proc_state *tst, unsigned int mode, __u8 action,
					__u8 flags)
{
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev) {
		count(COUNTER_RINGBUF_DROPS);
		return;
	}
	event_fill(ev, task, EVENT_TAMPER);
	ev->verdict = tst->verdict;
	ev->bin = tst->bin;
	ev->action = action;
	ev->flags = flags;
	ev->sock_ino = BPF_CORE_READ(target, tgid);
	ev->sock_dev = mode;
	bpf_ringbuf_submit(ev, 0);
}

/*
 * current asks for ptrace-class access to child. ptrace attach, /proc/PID/mem, process_vm_*
 * and pidfd_getfd all ask for PTRACE_MODE_ATTACH; reads of /proc/PID/stat and the like ask
 * only PTRACE_MODE_READ and stay allowed, so ps and top keep working.
 */
SEC("lsm/ptrace_access_check")
int BPF_PROG(dw_lsm_ptrace, struct task_struct *child, unsigned int mode, int ret)
{
	struct task_struct *task;
	struct proc_state *tst;

	if (ret)
		return ret;
	if (!(mode & PTRACE_MODE_ATTACH))
		return 0;
	task = bpf_get_current_task_btf();
	if (!supervised_state(task, 0) && !uid_supervised(task))
		return 0;
	/* A trusted client: its current image is a client (a fork child has verdict 0). */
	tst = bpf_task_storage_get(&proc_states, child->group_leader, 0, 0);
	if (!tst || tst->verdict == 0 || tst->verdict == VERDICT_NOT_CLIENT)
		return 0;
	if (dw_cfg.gate_audit) {
		emit_tamper(task, child, tst, mode, ACTION_NONE, EVENT_F_AUDIT);
		return 0;
	}
	emit_tamper(task, child, tst, mode, ACTION_DENIED, 0);
	return -EPERM;
}

#endif

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dockwatch enforcement programs (fallback mode, and lsm mode with lsm.h).
 *
 *   tp_btf/sched_process_fork   carry the "supervised" mark to a child's group leader
 *   tp_btf/sched_process_exec   identify the executable, classify a trusted client's argv,
 *                               store the verdict on the process and SIGKILL a BLOCK
 *   cgroup/connect_unix         deny a supervised process without ALLOW a protected socket path
 *   tracepoint/syscalls/sys_{enter,exit}_connect
 *                               post-connect check of the peer socket's inode (group access),
 *                               and the path check on kernels without connect_unix
 *
 * lsm mode (BPF LSM active) replaces the three connect programs with lsm/unix_stream_connect
 * and adds lsm/ptrace_access_check (lsm.h).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "kernel.h"
#include "dockwatch.h"
#include "classify.h"

#define SIGKILL 9
#define AF_UNIX 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct dw_config dw_cfg = {};

/* Keeps struct event in the BTF, for bpf2go's Go type; the ring buffer map cannot name it. */
const struct event *unused_event __attribute__((unused));

/* Real or effective UIDs whose processes are supervised. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} supervised_uids SEC(".maps");

/* Trusted client executables by (dev, ino) -> binary kind (BIN_DOCKER, ...). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct file_id);
	__type(value, __u8);
} trusted_clients SEC(".maps");

/* Protected socket paths, exact bytes, zero padded (each spelling is its own entry). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct sock_path);
	__type(value, __u32);
} protected_paths SEC(".maps");

/* Protected socket inodes, for the post-connect check. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct file_id);
	__type(value, __u32);
} protected_inodes SEC(".maps");

/*
 * Per process state, on the group leader. Task storage dies with the task, so a recycled pid
 * never inherits a verdict, and every thread finds the same entry through group_leader.
 */
struct proc_state {
	__u8 supervised; /* marked through fork (follow_children) */
	__u8 verdict;	 /* of the last exec; 0 = none (a fork child that did not exec) */
	__u8 bin;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct proc_state);
} proc_states SEC(".maps");

/* fd of an in-flight connect() per thread, between sys_enter and sys_exit. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __s32);
} connect_fds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Counters, per CPU: COUNTER_* */
#define COUNTER_RINGBUF_DROPS 0
#define COUNTER_STORAGE_FAILS 1
#define COUNTER_MAX 4
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	if (c)
		*c += 1;
}

/*
 * The programs read kernel structures through the BTF pointers their context or
 * bpf_get_current_task_btf gives them: plain loads, which the verifier turns into loads that
 * read 0 on a fault (as BPF_CORE_READ does), without a bpf_probe_read_kernel call each. The
 * exec hook alone made some thirty of those calls per supervised exec.
 */
static __always_inline int uid_supervised(struct task_struct *task)
{
	const struct cred *cred = task->cred;
	__u32 uid = cred->uid.val;
	__u32 euid = cred->euid.val;

	return bpf_map_lookup_elem(&supervised_uids, &uid) ||
	       bpf_map_lookup_elem(&supervised_uids, &euid);
}

/* A verdict that lets the process use the protected sockets. */
static __always_inline int verdict_allows(__u8 verdict)
{
	return verdict == VERDICT_ALLOW || verdict == VERDICT_AUDIT ||
	       (verdict == VERDICT_UNDECIDED && dw_cfg.undecided_allow);
}

/* Fills the fields every event has. */
static __always_inline void event_fill(struct event *ev, struct task_struct *task, __u32 kind)
{
	const struct cred *cred = task->cred;
	struct inode *exe = task->mm->exe_file->f_inode;

	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->ktime_ns = bpf_ktime_get_boot_ns();
	ev->pid = task->pid;
	ev->tgid = task->tgid;
	ev->ppid = task->real_parent->tgid;
	ev->start_boottime = task->group_leader->start_boottime;
	ev->uid = cred->uid.val;
	ev->euid = cred->euid.val;
	ev->exe_ino = exe->i_ino;
	ev->exe_dev = exe->i_sb->s_dev;
	ev->bin = BIN_NONE;
}

/*
 * A process is supervised when its real or effective uid is configured, or when it carries the
 * mark. Returns its state (created when needed) or NULL when it is not supervised. The state of
 * a supervised process that could not be stored is reported by *fail.
 */
static __always_inline struct proc_state *supervised_state(struct task_struct *task, int create)
{
	struct task_struct *leader = task->group_leader;
	struct proc_state *st = bpf_task_storage_get(&proc_states, leader, 0, 0);

	if (st && st->supervised)
		return st;
	if (!uid_supervised(task))
		return NULL;
	if (!st && create) {
		st = bpf_task_storage_get(&proc_states, leader, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!st)
			count(COUNTER_STORAGE_FAILS);
	}
	return st;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(dw_fork, struct task_struct *parent, struct task_struct *child)
{
	struct proc_state *pst, *cst;
	struct task_struct *leader;

	if (!dw_cfg.follow_children)
		return 0;
	/* A new thread shares its leader (and the leader's state) with the parent. */
	leader = child->group_leader;
	if (leader != child)
		return 0;
	pst = bpf_task_storage_get(&proc_states, parent->group_leader, 0, 0);
	if (!(pst && pst->supervised) && !uid_supervised(parent))
		return 0;
	cst = bpf_task_storage_get(&proc_states, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!cst) {
		count(COUNTER_STORAGE_FAILS);
		return 0;
	}
	/* Only the mark is inherited: a fork child has no verdict until it execs. */
	cst->supervised = 1;
	cst->verdict = 0;
	return 0;
}

/*
 * Sends the exec event: header plus the argv bytes that were read, in one record sized to fit
 * (a dynptr reservation may have a variable size, a plain one may not).
 */
static __always_inline void emit_exec(struct task_struct *task, struct file_id *exe, __u8 bin,
				      __u8 verdict, __u8 action, __u8 flags, struct result *res,
				      struct classify_scratch *s)
{
	struct bpf_dynptr dp;
	struct event *ev;
	__u64 argv_len = s ? s->argv.nbytes : 0;

	if (argv_len > MAX_ARGV_BYTES)
		argv_len = MAX_ARGV_BYTES;
	if (bpf_ringbuf_reserve_dynptr(&events, sizeof(*ev) + argv_len, 0, &dp)) {
		count(COUNTER_RINGBUF_DROPS);
		goto discard;
	}
	ev = bpf_dynptr_data(&dp, 0, sizeof(*ev));
	if (!ev)
		goto discard;
	event_fill(ev, task, EVENT_EXEC);
	ev->exe_ino = exe->ino;
	ev->exe_dev = exe->dev;
	ev->bin = bin;
	ev->verdict = verdict;
	ev->action = action;
	ev->flags = flags;
	ev->res.verdict = res->verdict;
	ev->res.rule = res->rule;
	ev->res.help = res->help;
	ev->res.node = res->node;
	ev->res.effect = res->effect;
	ev->res.token = res->token;
	ev->argv_len = argv_len;
	if (s && argv_len && bpf_dynptr_write(&dp, sizeof(*ev), s->argv.data, argv_len, 0))
		goto discard;
	bpf_ringbuf_submit_dynptr(&dp, 0);
	return;
discard:
	/* A failed reservation must be discarded too: the verifier tracks the dynptr. */
	bpf_ringbuf_discard_dynptr(&dp, 0);
}

/* Setgid access: untrusted execs by holders of a socket's group (uses events, event_fill). */
#include "setgid.h"
/* LSM mode (connect gate, ptrace) and the loader-variable check of a client's environment. */
#include "lsm.h"

SEC("tp_btf/sched_process_exec")
int BPF_PROG(dw_exec, struct task_struct *task, int old_pid, struct linux_binprm *bprm)
{
	struct classify_scratch *s = NULL;
	struct result res = {};
	struct file_id id = {};
	struct proc_state *st;
	struct inode *inode;
	__u8 *binp, bin, verdict, flags = 0, action = ACTION_NONE;

	/*
	 * The hook runs after exec has committed: de_thread made the caller the group leader,
	 * the new credentials are installed, and mm is the new image's. Nothing of the new image
	 * has run yet, and its argv can no longer be changed by another thread.
	 */
	st = supervised_state(task, 1);
	if (!st) {
		if (uid_supervised(task)) {
			/* Supervised, but no room to keep a verdict: fail closed. */
			bpf_send_signal(SIGKILL);
		}
		return 0;
	}
	if (dw_cfg.follow_children)
		st->supervised = 1;

	inode = bprm->file->f_inode;
	id.ino = inode->i_ino;
	id.dev = inode->i_sb->s_dev;
	binp = bpf_map_lookup_elem(&trusted_clients, &id);
	if (!binp) {
		st->verdict = VERDICT_NOT_CLIENT;
		st->bin = BIN_NONE;
		setgid_exec_check(task, &id, bprm);
		return 0;
	}
	bin = *binp;

	if (task->ptrace) {
		/* A tracer could rewrite the vetted argv or memory after this check. */
		verdict = VERDICT_BLOCK;
		flags |= EVENT_F_PTRACED;
	} else if (!(s = scratch_acquire())) {
		verdict = VERDICT_UNDECIDED;
		flags |= EVENT_F_ARGV_TRUNCATED;
	} else {
		struct mm_struct *mm = task->mm;
		unsigned long arg_start = mm->arg_start, arg_end = mm->arg_end;
		/* Before argv: the scan uses the argv buffer. */
		int tampered = env_tampered(s, task);

		argv_read_user(s, arg_start, arg_end);
		classify(s, bin, &res);
		verdict = res.verdict;
		if (s->argv.truncated || s->argv.fault)
			flags |= EVENT_F_ARGV_TRUNCATED;
		if (tampered) {
			/* LD_PRELOAD and friends run foreign code inside the vetted client. */
			verdict = VERDICT_BLOCK;
			flags |= EVENT_F_TAMPERED_ENV;
		}
	}
	st->verdict = verdict;
	st->bin = bin;

	if (verdict == VERDICT_BLOCK || (verdict == VERDICT_UNDECIDED && !dw_cfg.undecided_allow)) {
		/* Delivered before the return to user mode: the new image never runs. */
		bpf_send_signal(SIGKILL);
		action = ACTION_KILLED;
	}
	emit_exec(task, &id, bin, verdict, action, flags, &res, s);
	if (s)
		scratch_release(s);
	return 0;
}

/* Copies the address's path up to its first NUL into a zeroed key; 0 if not a path socket. */
static __always_inline int read_sun_path(struct sock_path *key, const void *sun_path, __u64 len,
					 int user)
{
	__u32 i;

	if (len == 0 || len > SUN_PATH_MAX)
		len = SUN_PATH_MAX;
	/* Keep the bound in the register the helper gets, whatever clang reorders. */
	asm volatile("" : "+r"(len));
	if (len > SUN_PATH_MAX)
		return 0;
	__builtin_memset(key, 0, sizeof(*key));
	if (user) {
		if (bpf_probe_read_user(key->path, len, sun_path))
			return 0;
	} else if (bpf_probe_read_kernel(key->path, len, sun_path)) {
		return 0;
	}
	/* An abstract socket starts with NUL: not a path, not protected. */
	if (key->path[0] == 0)
		return 0;
	/* The kernel resolves sun_path as a C string: bytes after a NUL do not count. */
	for (i = 1; i < SUN_PATH_MAX; i++) {
		if (key->path[i] == 0) {
			/* volatile: keep clang from turning the loop into memset */
			for (; i < SUN_PATH_MAX; i++)
				((volatile char *)key->path)[i] = 0;
			break;
		}
	}
	return 1;
}

static __always_inline void emit_connect(struct task_struct *task, struct sock_path *key,
					 __u8 verdict, __u8 action, __u8 flags, struct file_id *sock)
{
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	__u32 i;

	if (!ev) {
		count(COUNTER_RINGBUF_DROPS);
		return;
	}
	event_fill(ev, task, EVENT_CONNECT);
	ev->verdict = verdict;
	ev->action = action;
	ev->flags = flags;
	if (sock) {
		ev->sock_ino = sock->ino;
		ev->sock_dev = sock->dev;
	}
	if (key) {
		__builtin_memcpy(ev->path, key->path, SUN_PATH_MAX);
		for (i = 0; i < SUN_PATH_MAX && key->path[i]; i++)
			;
		ev->path_len = i;
	}
	bpf_ringbuf_submit(ev, 0);
}

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

SEC("cgroup/connect_unix")
int dw_connect_unix(struct bpf_sock_addr *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bpf_sock_addr_kern *sa;
	struct proc_state *st;
	struct sock_path key;
	__u8 verdict;

	st = supervised_state(task, 0);
	if (!st) {
		if (!uid_supervised(task))
			return 1;
		verdict = 0;
	} else {
		verdict = st->verdict;
	}
	if (verdict_allows(verdict))
		return 1;

	sa = bpf_cast_to_kern_ctx(ctx);
	/* uaddr points at the kernel's copy of the address; its sun_path follows sa_family. */
	if (!read_sun_path(&key, (const char *)sa->uaddr + sizeof(unsigned short),
			   sa->uaddrlen - sizeof(unsigned short), 0))
		return 1;
	if (!bpf_map_lookup_elem(&protected_paths, &key))
		return 1;
	if (dw_cfg.gate_audit) {
		emit_connect(task, &key, verdict, ACTION_NONE, EVENT_F_AUDIT, NULL);
		return 1;
	}
	emit_connect(task, &key, verdict, ACTION_DENIED, 0, NULL);
	return 0;
}

/* Syscall tracepoint records: the fields of events/syscalls/sys_*_connect/format. */
struct sys_enter_connect_args {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__u64 fd;
	__u64 uservaddr;
	__u64 addrlen;
};

struct sys_exit_args {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__s64 ret;
};

SEC("tracepoint/syscalls/sys_enter_connect")
int dw_enter_connect(struct sys_enter_connect_args *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct proc_state *st = supervised_state(task, 0);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__s32 fd = (__s32)ctx->fd;
	struct sock_path key;
	unsigned short family;
	__u8 verdict = 0;

	if (!st && !uid_supervised(task))
		return 0;
	if (st)
		verdict = st->verdict;
	if (verdict_allows(verdict))
		return 0;

	if (dw_cfg.enter_path_check && ctx->addrlen > sizeof(family) &&
	    !bpf_probe_read_user(&family, sizeof(family), (void *)ctx->uservaddr) &&
	    family == AF_UNIX &&
	    read_sun_path(&key, (void *)(ctx->uservaddr + sizeof(family)),
			  ctx->addrlen - sizeof(family), 1) &&
	    bpf_map_lookup_elem(&protected_paths, &key)) {
		/*
		 * A tracepoint cannot fail the syscall; SIGKILL takes the whole process before the
		 * return to user mode, so no thread gets to use the connection.
		 */
		if (dw_cfg.gate_audit) {
			emit_connect(task, &key, verdict, ACTION_NONE,
				     EVENT_F_ENTER_CHECK | EVENT_F_AUDIT, NULL);
		} else {
			bpf_send_signal(SIGKILL);
			emit_connect(task, &key, verdict, ACTION_KILLED, EVENT_F_ENTER_CHECK, NULL);
			return 0;
		}
	}
	if (dw_cfg.post_check)
		bpf_map_update_elem(&connect_fds, &tid, &fd, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int dw_exit_connect(struct sys_exit_args *ctx)
{
	struct task_struct *task;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__s32 *fdp = bpf_map_lookup_elem(&connect_fds, &tid);
	struct file **fds, *file;
	struct unix_sock *peer;
	struct inode *inode;
	struct socket *sock;
	struct sock *sk;
	struct file_id id = {};
	struct proc_state *st;
	__s32 fd;

	if (!fdp)
		return 0;
	fd = *fdp;
	bpf_map_delete_elem(&connect_fds, &tid);
	if (ctx->ret != 0 || fd < 0)
		return 0;

	task = bpf_get_current_task_btf();
	if (fd >= BPF_CORE_READ(task, files, fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX)
		return 0;
	/*
	 * The connected peer is the server end the listener created for this connection; it
	 * carries the listener's bound path, so its inode is the socket file that was reached,
	 * whatever path (symlink, hard link, /proc/PID/root, relative) led there.
	 */
	peer = (struct unix_sock *)BPF_CORE_READ((struct unix_sock *)sk, peer);
	if (!peer)
		return 0;
	inode = BPF_CORE_READ(peer, path.dentry, d_inode);
	if (!inode)
		return 0;
	id.ino = BPF_CORE_READ(inode, i_ino);
	id.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	if (!bpf_map_lookup_elem(&protected_inodes, &id))
		return 0;

	st = supervised_state(task, 0);
	if (dw_cfg.gate_audit) {
		emit_connect(task, NULL, st ? st->verdict : 0, ACTION_NONE,
			     EVENT_F_POST_CONNECT | EVENT_F_AUDIT, &id);
		return 0;
	}
	bpf_send_signal(SIGKILL);
	emit_connect(task, NULL, st ? st->verdict : 0, ACTION_KILLED, EVENT_F_POST_CONNECT, &id);
	return 0;
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Setgid access ([docker] access = "setgid", DESIGN.md §1.9): the supervised users are not in
 * the socket's group, and the trusted CLI is installed set-group-ID to it. The kernel's own
 * permission check on the socket inode then keeps every other program off the socket. What is
 * left for BPF: whatever the CLI execs keeps the group, because exec of a file that is not
 * itself set-ID leaves the gids alone (bprm_fill_uid starts from the current egid, and
 * cap_bprm_creds_from_file copies egid to sgid and fsgid). So a supervised process that holds
 * the group without being a member got it from the CLI, and may exec only trusted binaries:
 * the CLI and its trusted plugins (trusted_clients) and the configured helpers. Anything else
 * (a plugin from ~/.docker/cli-plugins or --config, a credential helper, ssh and its
 * ProxyCommand) is killed before its first instruction.
 *
 * Included by dockwatch.bpf.c after its maps and event helpers, which this file uses.
 */
#ifndef DOCKWATCH_SETGID_H
#define DOCKWATCH_SETGID_H

/*
 * event.flags: an exec killed because a process holding a socket's group ran an untrusted
 * binary. Such a record carries the executed file name (bprm->filename) in path[] and the
 * parent's executable in sock_dev/sock_ino (internal/events names both in the reason).
 */
#define EVENT_F_SETGID_EXEC 32

/* Gids that own a protected socket (empty with group access: the check never matches). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u8);
} setgid_groups SEC(".maps");

/* [docker] helpers by (dev, ino): binaries a setgid client may exec besides the clients. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct file_id);
	__type(value, __u8);
} setgid_helpers SEC(".maps");

/*
 * The gid fields of struct cred. The "___setgid" flavour is a second local view of the kernel's
 * struct cred (libbpf ignores the suffix when it relocates), so kernel.h stays as it is.
 */
typedef struct {
	__u32 val;
} dw_kgid_t;

struct cred___setgid {
	dw_kgid_t gid;
	dw_kgid_t sgid;
	dw_kgid_t egid;
	dw_kgid_t fsgid;
} __kernel_struct;

struct linux_binprm___setgid {
	const char *filename; /* the name exec was asked for (the script, not its interpreter) */
} __kernel_struct;

/*
 * Whether the new credentials hold a socket's group in any gid that a later setresgid or
 * setfsgid could make effective: real, effective, saved and fs. Supplementary groups are
 * not looked at: they come only from membership (setgroups needs CAP_SETGID in the initial
 * namespace), and a member is refused at start-up and reload.
 */
static __always_inline int setgid_holds_group(struct task_struct *task)
{
	const struct cred___setgid *cred = (const void *)BPF_CORE_READ(task, cred);
	__u32 gids[4];
	int i;

	gids[0] = BPF_CORE_READ(cred, gid.val);
	gids[1] = BPF_CORE_READ(cred, egid.val);
	gids[2] = BPF_CORE_READ(cred, sgid.val);
	gids[3] = BPF_CORE_READ(cred, fsgid.val);
	for (i = 0; i < 4; i++) {
		if (bpf_map_lookup_elem(&setgid_groups, &gids[i]))
			return 1;
	}
	return 0;
}

static __always_inline void emit_setgid_exec(struct task_struct *task, struct file_id *exe,
					     struct linux_binprm *bprm)
{
	struct linux_binprm___setgid *b = (void *)bprm;
	struct task_struct *parent;
	struct event *ev;
	const char *name;
	long n;

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(COUNTER_RINGBUF_DROPS);
		return;
	}
	event_fill(ev, task, EVENT_EXEC);
	ev->exe_ino = exe->ino;
	ev->exe_dev = exe->dev;
	ev->verdict = VERDICT_NOT_CLIENT;
	ev->action = ACTION_KILLED;
	ev->flags = EVENT_F_SETGID_EXEC;
	parent = BPF_CORE_READ(task, real_parent);
	ev->sock_ino = BPF_CORE_READ(parent, mm, exe_file, f_inode, i_ino);
	ev->sock_dev = BPF_CORE_READ(parent, mm, exe_file, f_inode, i_sb, s_dev);
	name = BPF_CORE_READ(b, filename);
	n = bpf_probe_read_kernel_str(ev->path, sizeof(ev->path), name);
	/* n counts the NUL; a failed read leaves the name empty. */
	ev->path_len = n > 0 ? n - 1 : 0;
	bpf_ringbuf_submit(ev, 0);
}

/*
 * Called by the exec hook for a supervised process whose new executable is not a trusted
 * client. Kills it when it holds a socket's group and the executable is not a helper.
 */
static __always_inline void setgid_exec_check(struct task_struct *task, struct file_id *exe,
					      struct linux_binprm *bprm)
{
	if (!setgid_holds_group(task))
		return;
	if (bpf_map_lookup_elem(&setgid_helpers, exe))
		return;
	/* As for a BLOCK verdict: delivered before the return to user mode. */
	bpf_send_signal(SIGKILL);
	emit_setgid_exec(task, exe, bprm);
}

#endif

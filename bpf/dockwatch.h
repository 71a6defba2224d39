/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared between the dockwatch BPF programs and Go (internal/events decodes
 * struct event by hand; internal/loader checks the layout against the bpf2go type).
 * Any change here changes internal/events/decode.go too.
 */
#ifndef DOCKWATCH_H
#define DOCKWATCH_H

/* Event kinds (ring buffer record type). */
#define EVENT_EXEC 1
#define EVENT_CONNECT 2

/* What the kernel did. */
#define ACTION_NONE 0
#define ACTION_KILLED 1
#define ACTION_DENIED 2

/* event.flags */
#define EVENT_F_ARGV_TRUNCATED 1 /* argv exceeded the read limits: verdict UNDECIDED */
#define EVENT_F_PTRACED 2	 /* a trusted client was traced at exec: BLOCK */
#define EVENT_F_POST_CONNECT 4	 /* connect: found by the post-connect peer check */
#define EVENT_F_ENTER_CHECK 8	 /* connect: found by the sys_enter_connect path check */
#define EVENT_F_AUDIT 16	 /* connect: the gate is in audit mode, nothing was denied */

#define SUN_PATH_MAX 108

/* Load-time settings, rewritten from Go through spec.Variables before load. */
struct dw_config {
	__u8 follow_children;  /* mark descendants of supervised processes */
	__u8 undecided_allow;  /* UNDECIDED verdicts run instead of being killed */
	__u8 gate_audit;       /* connect gate logs instead of denying/killing */
	__u8 enter_path_check; /* kernel without connect_unix: check the path at sys_enter_connect */
	__u8 post_check;       /* check the connected peer's inode at sys_exit_connect */
	__u8 pad[3];
};

/* A file by identity: kernel s_dev (MAJOR<<20|MINOR) and inode number. */
struct file_id {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

struct sock_path {
	char path[SUN_PATH_MAX];
};

/* The classifier's answer, as in docs/tables.md. */
struct dw_result {
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
 * Ring buffer record. Exec events are followed by argv_len bytes of argv (NUL separated, as
 * in the new image's memory); connect events carry the socket path in path[].
 */
struct event {
	__u64 ktime_ns;	      /* bpf_ktime_get_boot_ns() */
	__u64 start_boottime; /* group leader's start time, ns since boot (/proc/PID/stat field 22) */
	__u64 exe_ino;	      /* executable of the process */
	__u64 sock_ino;	      /* connect: peer socket inode (post-connect check) */
	__u32 kind;	      /* EVENT_* */
	__u32 pid;	      /* thread id */
	__u32 tgid;	      /* process id */
	__u32 ppid;	      /* tgid of the real parent */
	__u32 uid;
	__u32 euid;
	__u32 exe_dev;
	__u32 sock_dev;
	__u32 argv_len;	 /* bytes of argv after this header */
	__u32 path_len;	 /* connect: bytes used in path */
	__u8 bin;	 /* binary kind of a trusted client (BIN_*), 0xff if not a client */
	__u8 verdict;	 /* final verdict (VERDICT_*) */
	__u8 action;	 /* ACTION_* */
	__u8 flags;	 /* EVENT_F_* */
	struct dw_result res; /* the classifier's result (zero when it did not run) */
	char path[SUN_PATH_MAX];
};

#define BIN_NONE 0xff

#endif

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel structure fields dockwatch reads. preserve_access_index makes every access a
 * CO-RE relocation, so the offsets come from the running kernel's BTF at load time; only the
 * field names and types have to match, and fields we never touch are simply not declared.
 */
#ifndef DOCKWATCH_KERNEL_H
#define DOCKWATCH_KERNEL_H

#define __kernel_struct __attribute__((preserve_access_index))

typedef struct {
	__u32 val;
} kuid_t;

struct cred {
	kuid_t uid;
	kuid_t euid;
} __kernel_struct;

struct super_block {
	__u32 s_dev; /* dev_t: MAJOR << 20 | MINOR, not the userspace st_dev encoding */
} __kernel_struct;

struct inode {
	__u16 i_mode;
	unsigned long i_ino;
	struct super_block *i_sb;
} __kernel_struct;

struct dentry {
	struct inode *d_inode;
} __kernel_struct;

struct path {
	struct dentry *dentry;
} __kernel_struct;

struct file {
	struct inode *f_inode;
	void *private_data;
} __kernel_struct;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __kernel_struct;

struct files_struct {
	struct fdtable *fdt;
} __kernel_struct;

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	struct file *exe_file;
} __kernel_struct;

struct task_struct {
	unsigned int ptrace;
	int pid;
	int tgid;
	__u64 start_boottime;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	const struct cred *cred;
	struct files_struct *files;
	struct mm_struct *mm;
} __kernel_struct;

struct linux_binprm {
	struct file *file;
} __kernel_struct;

struct sock_common {
	unsigned short skc_family;
} __kernel_struct;

struct sock {
	struct sock_common __sk_common;
} __kernel_struct;

struct socket {
	struct sock *sk;
} __kernel_struct;

/* struct sock is the first member, so a unix socket's struct sock * is its struct unix_sock *. */
struct unix_sock {
	struct path path; /* bound path; a connection's server end copies the listener's */
	struct sock *peer;
} __kernel_struct;

struct sockaddr {
	unsigned short sa_family;
} __kernel_struct;

/* The kernel side of a sock_addr program's context (bpf_cast_to_kern_ctx, kernel 6.3+). */
struct bpf_sock_addr_kern {
	struct sockaddr *uaddr;
	__u32 uaddrlen; /* 6.7+: length of *uaddr, set for AF_UNIX */
} __kernel_struct;

#endif

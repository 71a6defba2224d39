package sandbox

import "golang.org/x/sys/unix"

// cloneNewUser matches clone/unshare calls that create a user namespace. Inside one, an
// unprivileged process holds every capability over new mount namespaces, so it could bind-mount
// the Docker socket to a path the connect gate does not watch, or mount over the trusted client.
var (
	cloneNewUser   = &ArgBits{Arg: 0, Bits: unix.CLONE_NEWUSER, Name: "CLONE_NEWUSER"}
	cloneNoNewUser = &ArgBits{Arg: 0, Bits: unix.CLONE_NEWUSER, Clear: true, Name: "CLONE_NEWUSER"}
)

// Agent is the profile `dockwatch sandbox` puts on the supervised user's sessions (the agent and
// its login shell). Everything is allowed except the syscalls below.
//
// Decisions:
//   - clone3 fails with ENOSYS, not EPERM: its flags are in a struct behind a pointer, which a
//     seccomp filter cannot read, so CLONE_NEWUSER cannot be told apart there. ENOSYS is what an
//     old kernel says, and glibc (posix_spawn, pthread_create), Go and Rust's std then fall back to
//     clone(2), whose flags the filter does see. Same choice as Docker's and systemd's filters.
//   - setns is denied outright. Joining a namespace needs an fd of it, for example
//     /proc/PID/ns/user of any process of the same user that was started outside the sandbox (a
//     rootless container, a flatpak, a second login). The owner of a user namespace holds
//     CAP_SYS_ADMIN in it, so joining it gives the same mount power as creating one. An agent has no
//     legitimate use for setns.
//   - Only user namespaces are filtered in clone/unshare: every other namespace type needs
//     CAP_SYS_ADMIN, which an unprivileged process only gets from a user namespace.
func Agent() Profile {
	return Profile{
		Name: "agent",
		Description: "default allow; deny what would let a supervised process get around " +
			"dockwatch's kernel watch: tracing other processes, io_uring, bpf, kernel " +
			"modules and keys, mounts and user namespaces",
		NoNewPrivs:  true,
		ForeignArch: actKill,
		Default:     actAllow,
		Rules: []Rule{
			{
				Why: "reading or steering another process of the same user, such as a running " +
					"trusted docker client (its socket fd, its memory, its argv)",
				Action:   actEPERM,
				Syscalls: []string{"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd"},
			},
			{
				Why: "io_uring runs syscalls (connect, openat) from kernel workers that neither " +
					"syscall tracepoints nor this filter see",
				Action:   actEPERM,
				Syscalls: []string{"io_uring_setup", "io_uring_enter", "io_uring_register"},
			},
			{
				Why: "loading or observing kernel programs, and userfaultfd, which stretches " +
					"kernel races for exploits",
				Action:   actEPERM,
				Syscalls: []string{"bpf", "perf_event_open", "userfaultfd"},
			},
			{
				Why:    "replacing the kernel or loading code into it",
				Action: actEPERM,
				Syscalls: []string{"kexec_load", "kexec_file_load", "init_module", "finit_module",
					"delete_module"},
			},
			{
				Why:      "kernel keyrings: shared state and a long history of kernel bugs",
				Action:   actEPERM,
				Syscalls: []string{"keyctl", "add_key", "request_key"},
			},
			{
				Why: "mounting: a bind mount of the Docker socket or over the trusted client " +
					"would change what a path means to the connect gate",
				Action: actEPERM,
				Syscalls: []string{"mount", "umount2", "pivot_root", "move_mount", "fsopen",
					"fsconfig", "fsmount", "fspick", "open_tree", "mount_setattr"},
			},
			{
				Why:      "joining an existing namespace (a user namespace gives mount power)",
				Action:   actEPERM,
				Syscalls: []string{"setns"},
			},
			{
				Why: "clone3 hides its flags behind a pointer; ENOSYS makes libc and Go fall " +
					"back to clone, whose flags are checked",
				Action:   actENOSYS,
				Syscalls: []string{"clone3"},
			},
			{
				Why:      "creating a user namespace",
				Action:   actEPERM,
				Syscalls: []string{"unshare", "clone"},
				When:     cloneNewUser,
			},
		},
	}
}

// DaemonProfile is the allowlist the dockwatch daemon installs on itself once its BPF programs are
// attached, its sockets are listening and its privileges are dropped. Whatever is not listed fails
// with EPERM. The daemon never execs, mounts, traces or changes identity after setup.
func DaemonProfile() Profile {
	return Profile{
		Name: "daemon",
		Description: "allowlist for the dockwatch daemon after setup: Go runtime, files, " +
			"sockets, bpf maps and ring buffers, pidfd signals; everything else EPERM",
		NoNewPrivs:  true,
		ForeignArch: actKill,
		Default:     actEPERM,
		Rules: []Rule{
			{
				Why:      "glibc (cgo builds) tries clone3 for threads and falls back to clone on ENOSYS",
				Action:   actENOSYS,
				Syscalls: []string{"clone3"},
			},
			{
				Why:    "Go runtime: memory, threads, scheduling, signals, time, randomness",
				Action: actAllow,
				Syscalls: []string{
					"brk", "mmap", "munmap", "mprotect", "madvise", "mremap",
					"futex", "set_robust_list", "set_tid_address", "rseq",
					"sched_yield", "sched_getaffinity", "gettid", "getpid", "getppid", "tgkill",
					"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
					"nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday",
					"timer_create", "timer_settime", "timer_delete", "setitimer",
					"getrandom", "uname", "restart_syscall",
				},
			},
			{
				Why:    "Go netpoller and pipes",
				Action: actAllow,
				Syscalls: []string{
					"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "eventfd2",
					"pipe2", "ppoll", "pselect6",
				},
			},
			{
				Why: "files: config reload, /proc/PID reads, bpffs pins, tracefs ids, the event " +
					"history, journald's large-entry memfd fallback",
				Action: actAllow,
				Syscalls: []string{
					"openat", "read", "write", "readv", "writev", "pread64", "pwrite64", "close",
					"close_range", "lseek", "fstat", "newfstatat", "statx", "fstatfs", "statfs",
					"getdents64", "readlinkat", "faccessat", "faccessat2", "fcntl", "ioctl",
					"dup", "dup3", "fsync", "fdatasync", "ftruncate", "flock", "mkdirat",
					"unlinkat", "renameat", "renameat2", "fchmod", "fchmodat", "fchown",
					"fchownat", "umask", "getcwd", "sendfile", "splice", "copy_file_range",
					"memfd_create",
				},
			},
			{
				Why:    "identity and limits (read only, plus the memlock rlimit for old kernels)",
				Action: actAllow,
				Syscalls: []string{
					"getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid",
					"getresgid", "capget", "prlimit64", "getrusage", "sysinfo",
				},
			},
			{
				Why: "sockets: the event stream and metrics servers, sd_notify and journald " +
					"(unix datagrams with SCM_RIGHTS), webhook HTTP clients",
				Action: actAllow,
				Syscalls: []string{
					"socket", "socketpair", "bind", "listen", "accept", "accept4", "connect",
					"getsockname", "getpeername", "setsockopt", "getsockopt", "sendto",
					"recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
				},
			},
			{
				Why: "BPF: map updates on reload, ring buffer reads (mmap + epoll), program " +
					"reloads and tracepoint attach (perf_event_open + ioctl)",
				Action:   actAllow,
				Syscalls: []string{"bpf", "perf_event_open"},
			},
			{
				Why: "killing a blocked process without hitting a recycled pid, and Go's pidfd " +
					"probe (waitid P_PIDFD)",
				Action:   actAllow,
				Syscalls: []string{"pidfd_open", "pidfd_send_signal", "waitid"},
			},
			{
				Why:      "exit",
				Action:   actAllow,
				Syscalls: []string{"exit", "exit_group"},
			},
			{
				Why: "threads (clone without CLONE_NEWUSER; with it, the default EPERM applies: " +
					"the daemon never creates a user namespace)",
				Action:   actAllow,
				Syscalls: []string{"clone"},
				When:     cloneNoNewUser,
			},
		},
	}
}

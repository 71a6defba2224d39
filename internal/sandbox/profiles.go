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

// fstatat has a different name in each syscall table: newfstatat on x86_64, fstatat on arm64 (Go's
// os.Stat calls it on both). The daemon allowlist names both; Assemble skips the one the running
// architecture does not have.
func init() {
	optionalSyscalls["newfstatat"] = true
	optionalSyscalls["fstatat"] = true
}

// DaemonProfile is the allowlist `dockwatch run` installs on itself once its BPF programs are
// loaded and attached and its event socket and metrics listener are open. Whatever is not listed
// fails with EPERM; exec, tracing, module and kernel loading kill the daemon outright (the pinned
// programs keep enforcing, and a compromised daemon gets no second try).
//
// The list is what the daemon was seen to call after setup (strace -f on every filtered daemon
// of test/daemon, test/e2e and test/setgid, and a trial with SECCOMP_RET_LOG as the default
// action), plus the calls of paths those tests do not reach (journald, sd_notify, a divergence
// kill, DNS for the webhook, tracepoint attach on kernels without perf links), each group with
// its reason. It covers a pure Go build (CGO_ENABLED=0, as package.nix and the tests build) and
// the thread start of a cgo build. Setup itself (mounting bpffs, tracefs and cgroup2, binding
// and chowning the event socket, locking the pin dir) happens before the filter and is not
// allowed afterwards: a reload that finds a mount missing fails, and the old policy stays.
func DaemonProfile() Profile {
	return Profile{
		Name: "daemon",
		Description: "allowlist for the dockwatch daemon after setup: Go runtime, files, " +
			"sockets, bpf and tracepoint attach for reloads, pidfd signals; exec, tracing and " +
			"kernel loading kill it; everything else EPERM",
		NoNewPrivs:  true,
		ForeignArch: actKill,
		Default:     actEPERM,
		Rules: []Rule{
			{
				Why: "never legitimate after setup, and the first thing an attacker who owns the " +
					"daemon tries: running a program, tracing or steering another process, " +
					"loading kernel code",
				Action: actKill,
				Syscalls: []string{"execve", "execveat", "ptrace", "process_vm_writev",
					"init_module", "finit_module", "kexec_load", "kexec_file_load"},
			},
			{
				Why:      "glibc (cgo builds) tries clone3 for threads and falls back to clone on ENOSYS",
				Action:   actENOSYS,
				Syscalls: []string{"clone3"},
			},
			{
				Why: "Go runtime: memory (mprotect, mremap and brk only for a cgo build's libc), " +
					"thread start and exit, futexes, preemption signals (tgkill), scheduling, " +
					"time, randomness; uname for cilium/ebpf's kernel version",
				Action: actAllow,
				Syscalls: []string{
					"brk", "mmap", "munmap", "mprotect", "madvise", "mremap",
					"futex", "set_robust_list", "rseq", "gettid", "getpid", "tgkill",
					"sched_yield", "sched_getaffinity", "exit", "exit_group",
					"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
					"restart_syscall", "nanosleep", "clock_nanosleep", "clock_gettime",
					"getrandom", "uname",
				},
			},
			{
				Why:      "Go netpoller (eventfd wakeups; pipe2 on kernels whose eventfd2 fails)",
				Action:   actAllow,
				Syscalls: []string{"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "eventfd2", "pipe2"},
			},
			{
				Why: "files: the config and client binaries at reload, /proc/PID for events, " +
					"pins under bpffs (new pins are written next to the old ones and renamed " +
					"over them; unload removes them), tracefs ids, the ready file, the " +
					"event socket removed at exit, journald's large entries in /dev/shm",
				Action: actAllow,
				Syscalls: []string{
					"openat", "read", "write", "writev", "pread64", "close", "lseek", "fcntl",
					"fstat", "newfstatat", "fstatat", "statfs", "fstatfs", "getdents64", "readlinkat",
					"getcwd", "mkdirat", "unlinkat", "renameat", "renameat2", "flock",
				},
			},
			{
				Why:      "identity, read only (no set*id: the daemon never changes who it is)",
				Action:   actAllow,
				Syscalls: []string{"getuid", "geteuid", "getgid", "getegid"},
			},
			{
				Why: "sockets: accepting event stream clients and metrics scrapes on the " +
					"listeners opened before the filter; webhook HTTP and DNS; sd_notify and " +
					"journald (unix datagrams, journald binds an autobind address and passes " +
					"large entries with SCM_RIGHTS). No listen: new listeners need a restart",
				Action: actAllow,
				Syscalls: []string{
					"socket", "bind", "connect", "accept4", "shutdown", "getsockname",
					"getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg",
					"recvmsg",
				},
			},
			{
				Why: "reloads: map updates and the table generation swap, new programs and " +
					"links (bpf), tracepoint attach (perf_event_open, plus ioctl " +
					"PERF_EVENT_IOC_SET_BPF where the kernel has no perf links), ring buffer " +
					"reads, and the wait for running classifications after a swap " +
					"(membarrier MEMBARRIER_CMD_GLOBAL is an RCU grace period)",
				Action:   actAllow,
				Syscalls: []string{"bpf", "perf_event_open", "ioctl", "membarrier"},
			},
			{
				Why:      "killing a divergent process through a pidfd, so a recycled pid is never hit",
				Action:   actAllow,
				Syscalls: []string{"pidfd_open", "pidfd_send_signal"},
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

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * classify_test.bpf.c: runs classify() through BPF_PROG_TEST_RUN, so that Go tests can compare
 * it with the Go interpreter (internal/loader/classify_test.go).
 *
 * The caller writes argv, NUL separated exactly as at mm->arg_start, into test_argv[0], and
 * passes struct classify_test_ctx as the context. The same reader as the exec hook's copies it
 * (from kernel memory instead of user memory), so the token splitting and the limits are
 * tested too.
 */
#include "classify.h"

/* Twice MAX_ARGV_BYTES, so tests can go over the limit. */
#define TEST_ARGV_BYTES (2 * MAX_ARGV_BYTES)

struct test_argv {
	__u8 data[TEST_ARGV_BYTES];
};

struct classify_test_ctx {
	__u32 bin;	   /* in: BIN_* */
	__u32 len;	   /* in: bytes of test_argv[0] used */
	__u32 repeat;	   /* in: runs (0 is 1), for benchmarks */
	__u32 pad;
	__u64 ns;	   /* out: time for all runs */
	struct result res; /* out: result of the last run */
	__u32 ntok;	   /* out: tokens the reader stored */
	__u8 truncated;	   /* out */
	__u8 fault;	   /* out */
	__u16 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct test_argv);
} test_argv SEC(".maps");

struct test_run {
	__u32 slot;
	__u32 bin;
	unsigned long start;
	__u32 len;
	__u32 pad;
	struct result res;
};

/* One read and classification, as the exec hook does it. */
static long test_run_once(__u32 idx, struct test_run *r)
{
	struct cls_cb cb = { .slot = r->slot };
	struct classify_scratch *s = scratch_of(&cb);

	if (!s)
		return 1;
	argv_read_kernel(s, r->start, r->start + r->len);
	classify(s, r->bin, &r->res);
	return 0;
}

/*
 * BPF_PROG_TEST_RUN has no repeat for syscall programs, so the program repeats itself and
 * times the runs with bpf_ktime_get_ns.
 */
SEC("syscall")
int classify_test(struct classify_test_ctx *ctx)
{
	struct test_run r = {};
	struct classify_scratch *s;
	struct test_argv *in;
	__u32 zero = 0, repeat = ctx->repeat;
	__u64 t0;

	in = bpf_map_lookup_elem(&test_argv, &zero);
	if (!in || ctx->len > TEST_ARGV_BYTES)
		return 1;
	s = scratch_acquire();
	if (!s)
		return 2;
	r.slot = s->st.slot;
	r.bin = ctx->bin;
	r.start = (unsigned long)in->data;
	r.len = ctx->len;
	if (repeat == 0)
		repeat = 1;
	t0 = bpf_ktime_get_ns();
	bpf_loop(repeat, test_run_once, &r, 0);
	ctx->ns = bpf_ktime_get_ns() - t0;
	/* The verifier only allows ctx stores at a constant offset from ctx itself. */
	ctx->res = r.res;
	ctx->ntok = s->argv.ntok;
	ctx->truncated = s->argv.truncated;
	ctx->fault = s->argv.fault;
	scratch_release(s);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Glue between the exec hook and the table interpreter in classify.h:
 *   dw_classify_exec()  reads argv of the new image and classifies it
 *   dw_argv_copy()      copies the argv bytes just read into an event
 */
#ifndef DOCKWATCH_EXEC_CLASSIFY_H
#define DOCKWATCH_EXEC_CLASSIFY_H

#if __has_include("classify.h")
#include "classify.h"
#define DW_HAVE_CLASSIFIER 1
#else
/* classify.h is not there yet: every trusted-client exec is UNDECIDED. */
#define MAX_ARGV_BYTES 8192
#define VERDICT_ALLOW 1
#define VERDICT_BLOCK 2
#define VERDICT_AUDIT 3
#define VERDICT_NOT_CLIENT 4
#define VERDICT_UNDECIDED 5
#endif

struct dw_argv_raw {
	__u32 len;
	__u8 data[MAX_ARGV_BYTES];
};

#ifndef DW_HAVE_CLASSIFIER
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dw_argv_raw);
} dw_argv_stub SEC(".maps");

static __always_inline __u8 dw_classify_exec(__u8 bin, unsigned long start, unsigned long end,
					     struct dw_result *res, __u8 *flags)
{
	__u32 zero = 0;
	__u64 len;
	struct dw_argv_raw *a = bpf_map_lookup_elem(&dw_argv_stub, &zero);

	if (!a)
		return VERDICT_UNDECIDED;
	len = end - start;
	if (len > MAX_ARGV_BYTES) {
		len = MAX_ARGV_BYTES;
		*flags |= EVENT_F_ARGV_TRUNCATED;
	}
	asm volatile("" : "+r"(len));
	if (len > MAX_ARGV_BYTES)
		len = 0;
	if (bpf_probe_read_user(a->data, len, (void *)start))
		len = 0;
	a->len = len;
	res->verdict = VERDICT_UNDECIDED;
	return VERDICT_UNDECIDED;
}

static __always_inline __u32 dw_argv_copy(__u8 *dst)
{
	__u32 zero = 0;
	__u64 len;
	struct dw_argv_raw *a = bpf_map_lookup_elem(&dw_argv_stub, &zero);

	if (!a)
		return 0;
	len = a->len;
	if (len > MAX_ARGV_BYTES)
		len = MAX_ARGV_BYTES;
	asm volatile("" : "+r"(len));
	if (len > MAX_ARGV_BYTES)
		return 0;
	bpf_probe_read_kernel(dst, len, a->data);
	return len;
}
#endif

#endif

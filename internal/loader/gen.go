package loader

// The BPF objects are generated and committed, so `go build` needs no clang. Regenerate with
// `make generate` (BPF2GO_CC=clang-16 BPF2GO_STRIP=llvm-strip-16 go generate ./...).
//go:generate go tool bpf2go -target bpfel -type event dockwatch ../../bpf/dockwatch.bpf.c -- -O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -I../../bpf

package main

import "fmt"

// int80getpid calls getpid (i386 number 20) through the 32-bit int 0x80 entry.
func int80getpid() int32

func probeInt80() {
	fmt.Printf("int80_getpid=%d\n", int80getpid())
}

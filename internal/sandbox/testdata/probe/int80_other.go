//go:build !amd64

package main

import "fmt"

func probeInt80() { fmt.Println("int80_getpid=unsupported") }

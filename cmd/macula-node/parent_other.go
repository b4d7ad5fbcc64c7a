//go:build unix && !linux

package main

import "os"

// watchParent sends this process SIGTERM when its parent dies: without
// Linux's parent-death signal, by watching the parent process ID.
func watchParent() { watchParentByPolling(os.Getppid()) }

//go:build unix

package main

import (
	"os"
	"syscall"
	"time"
)

// parentPoll is how often watchParentByPolling looks at its parent.
const parentPoll = 500 * time.Millisecond

// watchParentByPolling sends this process SIGTERM once its parent is no
// longer ppid (it died, and the process was handed to another). The
// goroutine lives as long as the process, which it ends.
func watchParentByPolling(ppid int) {
	go func() {
		for os.Getppid() == ppid {
			time.Sleep(parentPoll)
		}
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}()
}

package main

import (
	"os"
	"syscall"
)

// watchParent asks the kernel for SIGTERM when the parent dies
// (PR_SET_PDEATHSIG), then checks that the parent did not die before that:
// a child of a dead parent has been handed to another (init, a subreaper).
// The signal comes when the parent's thread that started this process
// ends; the go command's threads live as long as it does.
func watchParent() {
	ppid := os.Getppid()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); errno != 0 {
		watchParentByPolling(ppid)
		return
	}
	if os.Getppid() != ppid || ppid == 1 {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
}

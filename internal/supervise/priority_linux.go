package supervise

import (
	"os"
	"syscall"
	"unsafe"
)

// onMainThread reports whether the calling goroutine runs on the
// process's main thread (its thread ID is the process ID).
func onMainThread() bool { return syscall.Gettid() == os.Getpid() }

// schedIdle is Linux's SCHED_IDLE scheduling policy.
const schedIdle = 5

// lowerThread lowers the calling thread's priority: to SCHED_IDLE when
// idle is set, else to nice value nice unless it is higher already. On
// Linux a nice value and a policy belong to a thread, and a process
// forked from it starts with them.
func lowerThread(nice int, idle bool) error {
	if idle {
		var param struct{ priority int32 } // must be 0 for SCHED_IDLE
		_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(syscall.Gettid()), schedIdle, uintptr(unsafe.Pointer(&param)))
		if errno != 0 {
			return errno
		}
		return nil
	}
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		return err
	}
	if 20-p >= nice { // the raw system call returns 20 - nice
		return nil
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}

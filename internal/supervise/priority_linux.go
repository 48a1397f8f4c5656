package supervise

import "syscall"

// lowerThread raises the calling thread's nice value to nice, unless it
// is higher already. On Linux a nice value belongs to a thread, and a
// process forked from it starts with it.
func lowerThread(nice int) error {
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		return err
	}
	if 20-p >= nice { // the raw system call returns 20 - nice
		return nil
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}

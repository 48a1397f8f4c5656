package images

import "syscall"

// lowerThreadPriority raises the calling thread's nice value to
// thumbnailNice: when the CPUs are busy, the kernel gives the threads
// serving requests (nice 0) about ten times its share. On Linux a nice
// value belongs to a thread, so the rest of the process keeps its
// priority. Failure (a seccomp filter, say) leaves the priority as it
// was: the gate alone then bounds the work.
//
// SCHED_IDLE would yield the CPU more readily, but a thread starved by
// busy CPUs would also hold up every stop-the-world pause of the garbage
// collector, freezing the whole process; measured, it did not lower the
// API's latency either (docs/benchmarks.md).
func lowerThreadPriority() {
	// Never lower the nice value: a kiln started with nice 19 keeps 19.
	if n, err := threadNice(); err == nil && n < thumbnailNice {
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), thumbnailNice)
	}
}

// threadNice returns the calling thread's nice value (for tests).
func threadNice() (int, error) {
	// The raw system call returns 20 - nice, so that it is never negative.
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	return 20 - p, err
}

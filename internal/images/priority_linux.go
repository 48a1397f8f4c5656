package images

import "syscall"

// thumbnailNice is the nice value of the threads that decode and resize
// images: when the CPUs are busy, the kernel gives the threads serving
// requests (nice 0) about ten times their share.
const thumbnailNice = 10

// lowerThreadPriority sets the calling thread's nice value to
// thumbnailNice. On Linux a nice value belongs to a thread, so the rest of
// the process keeps its priority. Failure (a seccomp policy, say) leaves
// the priority as it was: the gate still bounds how many images decode.
func lowerThreadPriority() {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), thumbnailNice)
}

// threadNice returns the calling thread's nice value (for tests).
func threadNice() (int, error) {
	// The raw system call returns 20 - nice, so that it is never negative.
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	return 20 - p, err
}

//go:build !linux

package images

// lowerThreadPriority does nothing outside Linux, where a priority
// belongs to the whole process: the gate alone bounds thumbnail work.
func lowerThreadPriority() {}

// threadNice reports 0 outside Linux.
func threadNice() (int, error) { return 0, nil }

//go:build !linux

package supervise

import "errors"

// lowerThread is not supported here: a nice value belongs to the whole
// process on these systems, so lowering it would lower the parent's too.
func lowerThread(int, bool) error {
	return errors.New("lowering only the child's priority is supported on Linux")
}

// onMainThread is false here: lowerThread changes nothing to protect.
func onMainThread() bool { return false }

package metrics

import (
	"sync"
	"sync/atomic"
)

// maxCached caps the label sets a cache keeps. Label values come from the
// engine and the router, so they are few; past the cap (a queue or kind
// name per job, say) lookups still work, through make, without growing
// the copied map further.
const maxCached = 4096

// cache maps label sets to their metric children. Reads are one atomic
// load and one map lookup: no lock, no allocation. A miss copies the map
// under a mutex, which happens once per label set.
type cache[K comparable, V any] struct {
	m    atomic.Pointer[map[K]V]
	mu   sync.Mutex
	make func(K) V
	// limit replaces maxCached when positive.
	limit int
}

// get returns the value of k, making and keeping it on the first call.
func (c *cache[K, V]) get(k K) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	return c.slow(k)
}

func (c *cache[K, V]) slow(k K) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[K]V
	if p := c.m.Load(); p != nil {
		old = *p
	}
	if v, ok := old[k]; ok {
		return v
	}
	v := c.make(k)
	limit := maxCached
	if c.limit > 0 {
		limit = c.limit
	}
	if len(old) >= limit {
		return v
	}
	next := make(map[K]V, len(old)+1)
	for key, val := range old {
		next[key] = val
	}
	next[k] = v
	c.m.Store(&next)
	return v
}

package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c, a feature's own collector, on reg and returns
// the collector to use: c, or the one of the same description that reg
// already holds (a feature registered twice in one process, as tests do).
// With a nil reg it returns c unregistered, so that the feature can
// observe it all the same. It panics, as MustRegister does, when c
// clashes with a different collector: a programming error.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// Package defaults fills in option fields left unset.
//
// A field whose zero value alone means "unset" takes cmp.Or; this package is
// for the fields where any value at or below zero means "unset", which
// cmp.Or would keep.
package defaults

type number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~float32 | ~float64
}

// Positive sets *v to def when *v is zero or negative.
func Positive[T number](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

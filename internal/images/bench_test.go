package images

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"io"
	"testing"
)

// photo12MP returns a 4000×3000 JPEG with gradients and fine detail, so
// that its size and decoding cost resemble a camera's.
func photo12MP(b *testing.B) []byte {
	b.Helper()
	m := image.NewRGBA(image.Rect(0, 0, 4000, 3000))
	for y := range 3000 {
		for x := range 4000 {
			v := uint8((x ^ y) & 0x3f)
			m.SetRGBA(x, y, color.RGBA{uint8(x / 16), uint8(y / 12), 128 + v, 255})
		}
	}
	return encodeJPEG(b, m)
}

// thumbnail does an image.thumbnail job's work on data, without the
// database: header, orientation, decode, every variant encoded.
func thumbnail(data []byte, sizes []int) error {
	h, err := inspect(bytes.NewReader(data), testLimits)
	if err != nil {
		return err
	}
	o := readOrientation(bytes.NewReader(data))
	m, err := decode(bytes.NewReader(data), h)
	if err != nil {
		return err
	}
	w, ht := h.width, h.height
	if o >= 5 {
		w, ht = ht, w
	}
	f := h.format.variantFormat()
	return render(context.Background(), m, o, targets(w, ht, sizes), func(_ target, v image.Image) error {
		return encode(io.Discard, v, f)
	})
}

// BenchmarkThumbnail12MP makes the three default variants of a 12 MP
// JPEG per iteration.
func BenchmarkThumbnail12MP(b *testing.B) {
	data := photo12MP(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := thumbnail(data, DefaultSizes); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
}

package images

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzReadOrientation feeds arbitrary bytes to the EXIF reader: never a
// panic, always an orientation from 1 to 8.
func FuzzReadOrientation(f *testing.F) {
	jpg := encodeJPEG(f, gradient(8, 8))
	f.Add(jpg)
	for o := 1; o <= 8; o++ {
		f.Add(withOrientation(jpg, o))
	}
	f.Add(withSegments(jpg, app1(append([]byte("Exif\x00\x00"), exifTIFF(6, binary.LittleEndian)...))))
	f.Add([]byte{0xff, 0xd8, 0xff, 0xe1, 0x00, 0x08, 'E', 'x', 'i', 'f', 0, 0})
	f.Add([]byte{0xff, 0xd8, 0xff, 0xff, 0xff, 0xd0, 0xff, 0x01, 0xff, 0xe1, 0, 2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if o := readOrientation(bytes.NewReader(data)); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}

// FuzzTIFFOrientation fuzzes the TIFF walk directly, where a corrupt
// offset or count would read out of bounds.
func FuzzTIFFOrientation(f *testing.F) {
	for o := 0; o <= 9; o++ {
		f.Add(exifTIFF(o, binary.BigEndian))
		f.Add(exifTIFF(o, binary.LittleEndian))
	}
	f.Add([]byte("MM\x00\x2a\xff\xff\xff\xff"))
	f.Add([]byte("II\x2a\x00\x08\x00\x00\x00\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if o := tiffOrientation(b); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}

// FuzzParseSizes: never a panic; what is accepted is sorted, unique,
// within bounds, and parses back to itself.
func FuzzParseSizes(f *testing.F) {
	for _, s := range []string{"128,512,1024", " 16 , 8192", "", ",", "128,,", "-1", "99999999999999999999", "16,16,16", "1e3", "\x00", "128 512"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sizes, err := ParseSizes(s)
		if err != nil {
			if sizes != nil {
				t.Fatalf("%q: sizes %v with error %v", s, sizes, err)
			}
			return
		}
		if len(sizes) == 0 || len(sizes) > MaxSizes || !slices.IsSorted(sizes) || len(slices.Compact(slices.Clone(sizes))) != len(sizes) {
			t.Fatalf("%q: sizes %v", s, sizes)
		}
		for _, n := range sizes {
			if n < MinSize || n > MaxSize {
				t.Fatalf("%q: size %d out of range", s, n)
			}
		}
		again, err := ParseSizes(formatSizes(sizes))
		if err != nil || !slices.Equal(again, sizes) {
			t.Fatalf("%q: %v does not parse back: %v %v", s, sizes, again, err)
		}
	})
}

// FuzzInspect feeds arbitrary bytes to the header check and, when it
// passes, to the decoder: never a panic; a refusal is a *rejectError;
// anything accepted is within the limits and decodes to its declared
// size or fails cleanly.
func FuzzInspect(f *testing.F) {
	f.Add(encodeJPEG(f, gradient(9, 5)))
	f.Add(encodePNG(f, gradient(3, 7)))
	f.Add(encodeGIF(f, gradient(4, 4)))
	f.Add(pngBomb(100000, 100000))
	f.Add(jpegBomb(65535, 65535))
	f.Add(gifBomb(65535, 2))
	f.Add([]byte("hello"))
	lim := limits{maxPixels: 1 << 16, maxDimension: 1024} // keep decodes small
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := inspect(bytes.NewReader(data), lim)
		if err != nil {
			var rej *rejectError
			if !errors.As(err, &rej) && !strings.HasPrefix(err.Error(), "not an image: ") {
				t.Fatalf("inspect: %v", err)
			}
			return
		}
		if h.width < 1 || h.height < 1 || h.width > lim.maxDimension || h.height > lim.maxDimension || int64(h.width)*int64(h.height) > lim.maxPixels {
			t.Fatalf("accepted %+v", h)
		}
		m, err := decode(bytes.NewReader(data), h)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "not an image: ") {
				t.Fatalf("decode: %v", err)
			}
			return
		}
		if b := m.Bounds(); b.Dx() != h.width || b.Dy() != h.height {
			t.Fatalf("decoded %v, declared %dx%d", b, h.width, h.height)
		}
	})
}

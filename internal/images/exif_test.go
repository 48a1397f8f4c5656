package images

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadOrientation(t *testing.T) {
	t.Parallel()
	jpg := encodeJPEG(t, gradient(16, 8))
	exif := func(o int, bo binary.AppendByteOrder) []byte {
		return app1(append([]byte("Exif\x00\x00"), exifTIFF(o, bo)...))
	}
	for o := 1; o <= 8; o++ {
		for _, bo := range []binary.AppendByteOrder{binary.BigEndian, binary.LittleEndian} {
			data := withSegments(jpg, exif(o, bo))
			if got := readOrientation(bytes.NewReader(data)); got != o {
				t.Errorf("orientation %d, %v: read %d", o, bo, got)
			}
			// One byte at a time, as a slow reader delivers it.
			if got := readOrientation(iotest.OneByteReader(bytes.NewReader(data))); got != o {
				t.Errorf("orientation %d, %v, one byte at a time: read %d", o, bo, got)
			}
		}
	}
	xmp := app1([]byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"))
	jfif := append([]byte{0xff, 0xe0, 0, 16}, "JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"...)
	tiff6 := exifTIFF(6, binary.BigEndian)
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"no EXIF", jpg, 1},
		{"after JFIF and XMP", withSegments(jpg, jfif, xmp, exif(6, binary.BigEndian)), 6},
		{"fill bytes before the marker", withSegments(jpg, append([]byte{0xff, 0xff}, exif(3, binary.LittleEndian)...)), 3},
		{"after the frame header", append(slices.Clone(jpg[:len(jpg)-2]), exif(6, binary.BigEndian)...), 1},
		{"orientation 0", withSegments(jpg, exif(0, binary.BigEndian)), 1},
		{"orientation 9", withSegments(jpg, exif(9, binary.BigEndian)), 1},
		{"truncated TIFF", withSegments(jpg, app1(append([]byte("Exif\x00\x00"), tiff6[:20]...))), 1},
		{"bad byte order", withSegments(jpg, app1(append([]byte("Exif\x00\x00XX"), tiff6[2:]...))), 1},
		{"bad magic", withSegments(jpg, app1(append([]byte("Exif\x00\x00MM\x00\x2b"), tiff6[4:]...))), 1},
		{"IFD offset past the end", withSegments(jpg, app1(append([]byte("Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0"), tiff6[8:]...))), 1},
		{"segment length past the end", []byte{0xff, 0xd8, 0xff, 0xe1, 0xff, 0xff, 'E', 'x'}, 1},
		{"segment length below 2", []byte{0xff, 0xd8, 0xff, 0xe1, 0x00, 0x01}, 1},
		{"not a JPEG", []byte("\x89PNG\r\n\x1a\n"), 1},
		{"empty", nil, 1},
		{"only SOI", []byte{0xff, 0xd8}, 1},
	} {
		if got := readOrientation(bytes.NewReader(tc.data)); got != tc.want {
			t.Errorf("%s: read %d, want %d", tc.name, got, tc.want)
		}
	}
	// The orientation field typed LONG instead of SHORT is malformed.
	bad := exifTIFF(6, binary.BigEndian)
	bad[8+2+12+3] = 4
	if got := tiffOrientation(bad); got != 1 {
		t.Errorf("orientation typed LONG: %d", got)
	}
}

func TestParseSizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{"128,512,1024", "[128 512 1024]"},
		{" 1024 , 128,512 ", "[128 512 1024]"},
		{"16", "[16]"},
		{"8192", "[8192]"},
		{"256,256", "[256]"},
		{"00128", "[128]"},
		{"16,17,18,19,20,21,22,23", "[16 17 18 19 20 21 22 23]"},
		{"", "error: must list at least one size"},
		{"   ", "error: must list at least one size"},
		{"15", "error: size 15 is out of range: each must be from 16 to 8192 pixels"},
		{"8193", "error: size 8193 is out of range"},
		{"128,,512", `error: size 2 ("") must be a whole number of pixels from 16 to 8192`},
		{"128,", `error: size 2 ("")`},
		{"-128", `error: size 1 ("-128")`},
		{"+128", `error: size 1 ("+128")`},
		{"12.5", `error: size 1 ("12.5")`},
		{"1e3", `error: size 1 ("1e3")`},
		{"999999999999999999999", `error: size 1 ("999999999999999999999")`},
		{"128;512", `error: size 1 ("128;512")`},
		{"16,17,18,19,20,21,22,23,24", "error: must list at most 8 sizes, got 9"},
		{strings.Repeat(" ", 300) + "16", "error: must be at most 256 characters"},
	} {
		got, err := ParseSizes(tc.in)
		s := fmt.Sprint(got)
		if err != nil {
			s = "error: " + err.Error()
		}
		if !strings.HasPrefix(s, tc.want) {
			t.Errorf("ParseSizes(%q) = %s, want %s", tc.in, s, tc.want)
		}
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(o.Sizes) != "[128 512 1024]" || o.MaxUploadBytes != 20<<20 || o.MaxPixels != 50_000_000 || o.MaxDimension != 20000 || o.JobTimeout == 0 || o.Now == nil {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []Options{
		{Sizes: []int{}}, {Sizes: []int{8}}, {Sizes: []int{9000}}, {Sizes: []int{16, 17, 18, 19, 20, 21, 22, 23, 24}},
		{MaxUploadBytes: -1}, {MaxPixels: -1}, {MaxDimension: -1}, {JobTimeout: -1}, {UploadTimeout: -1}, {MaxDecoding: -1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if o, err := (Options{Sizes: []int{64, 32, 64}}).withDefaults(); err != nil || fmt.Sprint(o.Sizes) != "[32 64]" {
		t.Errorf("sizes normalized to %v, %v", o.Sizes, err)
	}
}

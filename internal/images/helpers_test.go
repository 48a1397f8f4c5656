package images

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

// gradient returns a w×h RGBA image whose left half is red and right half
// blue, with a vertical green gradient, so that orientation and aspect
// are visible in any variant.
func gradient(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		g := uint8(y * 255 / max(1, h-1) / 4)
		for x := range w {
			c := color.RGBA{R: 220, G: g, B: 20, A: 255}
			if x >= w/2 {
				c = color.RGBA{R: 20, G: g, B: 220, A: 255}
			}
			m.SetRGBA(x, y, c)
		}
	}
	return m
}

func encodeJPEG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeGIF(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, m, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// exifTIFF returns a TIFF structure whose first IFD holds a dummy tag and
// then the orientation o, in byte order bo.
func exifTIFF(o int, bo binary.AppendByteOrder) []byte {
	var b []byte
	if bo == binary.LittleEndian {
		b = append(b, "II"...)
	} else {
		b = append(b, "MM"...)
	}
	b = bo.AppendUint16(b, 42)
	b = bo.AppendUint32(b, 8)
	b = bo.AppendUint16(b, 2) // entries
	// ImageDescription, ASCII, 4 bytes inline: "kiln" (skipped).
	b = bo.AppendUint16(b, 0x010e)
	b = bo.AppendUint16(b, 2)
	b = bo.AppendUint32(b, 4)
	b = append(b, "kiln"...)
	// Orientation, SHORT, 1.
	b = bo.AppendUint16(b, orientationTag)
	b = bo.AppendUint16(b, 3)
	b = bo.AppendUint32(b, 1)
	b = bo.AppendUint16(b, uint16(o))
	b = append(b, 0, 0)
	return bo.AppendUint32(b, 0) // no next IFD
}

// app1 returns a JPEG APP1 segment with payload.
func app1(payload []byte) []byte {
	seg := []byte{0xff, markerAPP1}
	seg = binary.BigEndian.AppendUint16(seg, uint16(len(payload)+2))
	return append(seg, payload...)
}

// withSegments inserts segments right after a JPEG's SOI marker.
func withSegments(jpg []byte, segs ...[]byte) []byte {
	out := append([]byte(nil), jpg[:2]...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return append(out, jpg[2:]...)
}

// withOrientation returns jpg with an EXIF segment declaring orientation
// o, in big-endian (Motorola) byte order.
func withOrientation(jpg []byte, o int) []byte {
	return withSegments(jpg, app1(append([]byte("Exif\x00\x00"), exifTIFF(o, binary.BigEndian)...)))
}

// pngChunk returns one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	b = append(b, typ...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(append([]byte(typ), data...)))
}

// pngBomb returns a small PNG whose header declares w×h 8-bit RGBA
// pixels: decoding it would need w×h×4 bytes.
func pngBomb(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // depth 8, RGBA, deflate, filter 0, no interlace
	b = append(b, pngChunk("IHDR", ihdr)...)
	// A tiny zlib stream of zeros, as a bomb would carry (a real one
	// expands to the full size).
	b = append(b, pngChunk("IDAT", []byte{0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01})...)
	return append(b, pngChunk("IEND", nil)...)
}

// jpegBomb returns a JPEG whose frame header declares w×h pixels.
func jpegBomb(w, h uint16) []byte {
	b := []byte{0xff, markerSOI}
	// SOF0: length 11, precision 8, height, width, 1 component.
	b = append(b, 0xff, 0xc0, 0, 11, 8)
	b = binary.BigEndian.AppendUint16(b, h)
	b = binary.BigEndian.AppendUint16(b, w)
	b = append(b, 1, 1, 0x11, 0)
	// Without a JFIF segment the header runs to the scan: SOS, 1
	// component, then the end.
	b = append(b, 0xff, markerSOS, 0, 8, 1, 1, 0, 0, 63, 0)
	return append(b, 0xff, markerEOI)
}

// gifBomb returns a GIF whose logical screen is w×h.
func gifBomb(w, h uint16) []byte {
	b := []byte("GIF89a")
	b = binary.LittleEndian.AppendUint16(b, w)
	b = binary.LittleEndian.AppendUint16(b, h)
	b = append(b, 0, 0, 0) // no global colour table
	return append(b, 0x3b)
}

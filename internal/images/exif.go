package images

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
)

// kiln reads the one EXIF field it needs by hand rather than through an
// EXIF library: orientation is a single SHORT in the first IFD, and a
// reader of a few dozen lines that gives up on anything unexpected is
// easier to fuzz and to trust with uploaded bytes than a general parser.

// JPEG markers the orientation reader cares about.
const (
	markerSOI  = 0xd8
	markerEOI  = 0xd9
	markerSOS  = 0xda
	markerAPP1 = 0xe1
	markerTEM  = 0x01
	markerRST0 = 0xd0
	markerRST7 = 0xd7
)

// maxSegments bounds how many segments before the image data the
// orientation reader walks; EXIF comes first or second in practice.
const maxSegments = 64

// orientationTag is the EXIF/TIFF tag of the orientation field.
const orientationTag = 0x0112

// readOrientation returns the EXIF orientation (1 to 8) of the JPEG
// stream r, reading only the segments before the first frame header. A
// stream that is not a JPEG, has no EXIF, or has a malformed or
// out-of-range orientation counts as 1 (as stored). It never reads more
// than one APP1 segment (at most 64 KiB) into memory.
func readOrientation(r io.Reader) int {
	br, ok := r.(io.ByteReader)
	if !ok {
		b := bufio.NewReaderSize(r, 4096)
		br, r = b, b
	}
	next := func() (byte, bool) {
		c, err := br.ReadByte()
		return c, err == nil
	}
	if c, ok := next(); !ok || c != 0xff {
		return 1
	}
	if c, ok := next(); !ok || c != markerSOI {
		return 1
	}
	for range maxSegments {
		c, ok := next()
		if !ok || c != 0xff {
			return 1
		}
		// Any number of 0xff fill bytes may precede a marker.
		for c == 0xff {
			if c, ok = next(); !ok {
				return 1
			}
		}
		m := c
		switch {
		case m == 0x00:
			return 1 // a stuffed byte: we are in entropy-coded data
		case m == markerTEM, m >= markerRST0 && m <= markerRST7:
			continue // no length
		case m == markerSOS, m == markerEOI, m == markerSOI, isSOF(m):
			return 1 // no EXIF before the image itself
		}
		var lb [2]byte
		if _, err := io.ReadFull(r, lb[:]); err != nil {
			return 1
		}
		n := int(binary.BigEndian.Uint16(lb[:])) - 2
		if n < 0 {
			return 1
		}
		if m != markerAPP1 {
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				return 1
			}
			continue
		}
		seg := make([]byte, n)
		if _, err := io.ReadFull(r, seg); err != nil {
			return 1
		}
		if tiff, ok := bytes.CutPrefix(seg, []byte("Exif\x00\x00")); ok {
			return tiffOrientation(tiff)
		}
		// Another APP1 (XMP): keep looking.
	}
	return 1
}

// isSOF reports whether m is a start-of-frame marker (SOF0 to SOF15, less
// DHT, JPG and DAC, which share the range).
func isSOF(m byte) bool {
	return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc
}

// tiffOrientation returns the orientation field of the first IFD of the
// TIFF structure b (an EXIF APP1 payload after "Exif\0\0"), or 1 when b
// is malformed or the field is missing or not in 1..8.
func tiffOrientation(b []byte) int {
	if len(b) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(b[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(b[2:4]) != 42 {
		return 1
	}
	off := uint64(bo.Uint32(b[4:8]))
	if off < 8 || off+2 > uint64(len(b)) {
		return 1
	}
	count := uint64(bo.Uint16(b[off : off+2]))
	entries := off + 2
	for i := range count {
		e := entries + i*12
		if e+12 > uint64(len(b)) {
			return 1
		}
		if bo.Uint16(b[e:e+2]) != orientationTag {
			continue
		}
		typ, n := bo.Uint16(b[e+2:e+4]), bo.Uint32(b[e+4:e+8])
		if typ != 3 || n != 1 { // one SHORT
			return 1
		}
		v := int(bo.Uint16(b[e+8 : e+10]))
		if v < 1 || v > 8 {
			return 1
		}
		return v
	}
	return 1
}

package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"slices"

	"golang.org/x/image/draw"
	"golang.org/x/image/math/f64"
)

// format is an image format kiln accepts.
type format string

// The accepted formats.
const (
	formatPNG  format = "png"
	formatJPEG format = "jpeg"
	formatGIF  format = "gif"
)

// contentType returns the format's media type.
func (f format) contentType() string { return "image/" + string(f) }

// variantFormat is the format variants of an f image are written in:
// JPEG for JPEG, PNG for the rest (which may have transparency).
func (f format) variantFormat() format {
	if f == formatJPEG {
		return formatJPEG
	}
	return formatPNG
}

// jpegQuality is the quality of JPEG variants.
const jpegQuality = 85

// sniff returns the format whose signature head starts with. The
// decoders are chosen from the bytes, never from a declared content type
// or from image.RegisterFormat, so that no other format linked into the
// binary is ever decoded.
func sniff(head []byte) (format, bool) {
	switch {
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return formatPNG, true
	case bytes.HasPrefix(head, []byte("\xff\xd8\xff")):
		return formatJPEG, true
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return formatGIF, true
	}
	return "", false
}

// sniffContentType returns the media type to store an upload as: its
// image type when head is PNG, JPEG or GIF, else application/octet-stream
// (never a type a browser would render, such as text/html).
func sniffContentType(head []byte) string {
	if f, ok := sniff(head); ok {
		return f.contentType()
	}
	return "application/octet-stream"
}

// rejectError is content an image.thumbnail job refuses for good: not an
// image, too large, or not decodable.
type rejectError struct{ msg string }

func (e *rejectError) Error() string { return e.msg }

func reject(format string, args ...any) error {
	return &rejectError{msg: fmt.Sprintf(format, args...)}
}

// limits bound what an image may declare before any pixel is decoded.
type limits struct {
	maxPixels    int64
	maxDimension int
}

// header is what inspect learns of an image without decoding it.
type header struct {
	format format
	// width and height are as stored, before EXIF orientation.
	width, height int
}

// inspect reads no more of r than the image's header and checks it: PNG,
// JPEG or GIF, positive dimensions within lim. A refusal is a
// *rejectError. It decodes no pixels, so a decompression bomb (a small
// file declaring a huge image) is refused before anything of its size is
// allocated. An error reading r is returned as it is, for the caller to
// tell apart from bad content.
func inspect(r io.Reader, lim limits) (header, error) {
	br := bufio.NewReaderSize(r, 4096)
	head, err := br.Peek(512)
	if len(head) == 0 {
		if err == io.EOF {
			return header{}, reject("not an image: the file is empty")
		}
		return header{}, err
	}
	f, ok := sniff(head)
	if !ok {
		return header{}, reject("not an image: the file looks like %s; send PNG, JPEG or GIF", http.DetectContentType(head))
	}
	var cfg image.Config
	switch f {
	case formatPNG:
		cfg, err = png.DecodeConfig(br)
	case formatJPEG:
		cfg, err = jpeg.DecodeConfig(br)
	case formatGIF:
		cfg, err = gif.DecodeConfig(br)
	}
	if err != nil {
		return header{}, fmt.Errorf("not an image: the %s header is malformed: %w", f, err)
	}
	h := header{format: f, width: cfg.Width, height: cfg.Height}
	switch {
	case h.width <= 0 || h.height <= 0:
		return header{}, reject("not an image: the %s header declares %dx%d pixels", f, h.width, h.height)
	case h.width > lim.maxDimension || h.height > lim.maxDimension:
		return header{}, reject("image too large: %dx%d pixels; the limit is %d pixels a side", h.width, h.height, lim.maxDimension)
	case int64(h.width)*int64(h.height) > lim.maxPixels:
		return header{}, reject("image too large: %dx%d is %.1f megapixels; the limit is %.1f", h.width, h.height,
			float64(h.width)*float64(h.height)/1e6, float64(lim.maxPixels)/1e6)
	}
	return h, nil
}

// decode decodes the image h describes from r (read from its start). Its
// bounds are (0,0)-(width,height): a GIF whose first frame covers only
// part of the logical screen is placed on a transparent canvas. A decode
// failure is not a *rejectError: the caller decides whether r or the
// content was at fault.
func decode(r io.Reader, h header) (image.Image, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		m   image.Image
		err error
	)
	switch h.format {
	case formatPNG:
		m, err = png.Decode(br)
	case formatJPEG:
		m, err = jpeg.Decode(br)
	case formatGIF:
		m, err = gif.Decode(br)
	default:
		return nil, fmt.Errorf("decode: unknown format %q", h.format)
	}
	if err != nil {
		return nil, fmt.Errorf("not an image: the %s data is malformed: %w", h.format, err)
	}
	screen := image.Rect(0, 0, h.width, h.height)
	if b := m.Bounds(); b != screen {
		if !b.In(screen) {
			return nil, fmt.Errorf("not an image: the %s frame %v lies outside its declared %dx%d", h.format, b, h.width, h.height)
		}
		canvas := image.NewNRGBA(screen)
		draw.Draw(canvas, b, m, b.Min, draw.Src)
		m = canvas
	}
	return m, nil
}

// fit returns the dimensions of a w×h image scaled so that its longest
// edge is size, keeping the aspect ratio (each side at least 1 pixel). An
// image whose longest edge is size or less keeps its dimensions: images
// are never scaled up.
func fit(w, h, size int) (int, int) {
	if max(w, h) <= size {
		return w, h
	}
	if w >= h {
		return size, max(1, int((int64(h)*int64(size)+int64(w)/2)/int64(w)))
	}
	return max(1, int((int64(w)*int64(size)+int64(h)/2)/int64(h))), size
}

// target is one variant to render: its dimensions as displayed and the
// sizes it serves. Sizes at or above the image's longest edge all give
// the original dimensions, so they share one target (and one file).
type target struct {
	w, h  int
	sizes []int
}

// targets returns what to render for an image of w×h (as displayed) in
// the given sizes, largest first.
func targets(w, h int, sizes []int) []target {
	s := slices.Clone(sizes)
	slices.Sort(s)
	slices.Reverse(s)
	var out []target
	for _, size := range s {
		tw, th := fit(w, h, size)
		if n := len(out); n > 0 && out[n-1].w == tw && out[n-1].h == th {
			out[n-1].sizes = append(out[n-1].sizes, size)
			continue
		}
		out = append(out, target{w: tw, h: th, sizes: []int{size}})
	}
	return out
}

// render produces every target from src (as stored, before orientation),
// largest first, and passes each, with EXIF orientation o applied, to
// emit. It never scales up and never holds more than src, one
// intermediate and one variant:
//
//   - while the next target is at most half the current image on both
//     sides, the image is halved (a 2×2 box average: YCbCr planes
//     directly, anything else into RGBA), and the previous intermediate
//     is released;
//   - the last step, less than 2× down, is [finalScaler]'s;
//   - orientation is applied to the small result (one nearest-neighbour
//     affine transform: exact for flips and quarter turns), never to src.
//
// Work stops between steps once ctx is done.
func render(ctx context.Context, src image.Image, o int, ts []target, emit func(target, image.Image) error) error {
	cur := src
	src = nil // let the original go once it has been halved
	for _, t := range ts {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		rw, rh := t.w, t.h // as stored
		if o >= 5 {
			rw, rh = rh, rw
		}
		for {
			b := cur.Bounds()
			if b.Dx()/2 < rw || b.Dy()/2 < rh {
				break
			}
			cur = halve(cur)
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
		}
		m := cur
		if b := cur.Bounds(); b.Dx() != rw || b.Dy() != rh {
			dst := image.NewRGBA(image.Rect(0, 0, rw, rh))
			finalScaler(rw, b.Dy()).Scale(dst, dst.Bounds(), cur, b, draw.Src, nil)
			m = dst
		}
		if err := emit(t, orient(m, o)); err != nil {
			return err
		}
	}
	return nil
}

// maxKernelScratch bounds the scratch buffer of a CatmullRom step.
const maxKernelScratch = 4 << 20

// finalScaler returns the interpolator of a last step (less than 2×
// down) to a dw-pixel-wide image from an sh-pixel-high one:
// draw.CatmullRom (sharpest, no aliasing) when its scratch buffer, dw ×
// sh × 32 bytes, is within maxKernelScratch, else draw.ApproxBiLinear,
// which at such a ratio blends the four nearest pixels (bilinear) and
// needs no scratch. For a 12 MP photo, CatmullRom's scratch would be
// 49 MB for the 1024-pixel variant and 12 MB for the 512 one (so those
// use ApproxBiLinear), and is 0.8 MB for the 128 one: a job's heap stays
// near the decoded image plus a quarter of it, under 30 MB in all.
func finalScaler(dw, sh int) draw.Scaler {
	if int64(dw)*int64(sh)*32 <= maxKernelScratch {
		return draw.CatmullRom
	}
	return draw.ApproxBiLinear
}

// halve returns m at half its width and height (rounded down), each
// pixel the average of a 2×2 block.
func halve(m image.Image) image.Image {
	if y, ok := m.(*image.YCbCr); ok && y.Rect.Min == (image.Point{}) {
		return halveYCbCr(y)
	}
	b := m.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx()/2, b.Dy()/2))
	// At exactly 2× down, ApproxBiLinear samples the middle of each 2×2
	// block: their average.
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), m, b, draw.Src, nil)
	return dst
}

// halveYCbCr halves a YCbCr image plane by plane, keeping its chroma
// subsampling, so that a decoded JPEG's first reduction costs a quarter
// of its (already compact) size rather than an RGBA copy.
func halveYCbCr(src *image.YCbCr) *image.YCbCr {
	w, h := src.Rect.Dx()/2, src.Rect.Dy()/2
	dst := image.NewYCbCr(image.Rect(0, 0, w, h), src.SubsampleRatio)
	halvePlane(dst.Y, dst.YStride, w, h, src.Y, src.YStride, src.Rect.Dx(), src.Rect.Dy())
	scw, sch := chromaSize(src.Rect.Dx(), src.Rect.Dy(), src.SubsampleRatio)
	dcw, dch := chromaSize(w, h, src.SubsampleRatio)
	halvePlane(dst.Cb, dst.CStride, dcw, dch, src.Cb, src.CStride, scw, sch)
	halvePlane(dst.Cr, dst.CStride, dcw, dch, src.Cr, src.CStride, scw, sch)
	return dst
}

// halvePlane writes into the dw×dh plane dst the 2×2 averages of the
// sw×sh plane src, repeating src's last row or column where dst asks for
// one more than src has.
func halvePlane(dst []byte, dstride, dw, dh int, src []byte, sstride, sw, sh int) {
	if sw == 0 || sh == 0 {
		return
	}
	for y := range dh {
		y0 := min(2*y, sh-1)
		y1 := min(2*y+1, sh-1)
		r0, r1 := src[y0*sstride:y0*sstride+sw], src[y1*sstride:y1*sstride+sw]
		out := dst[y*dstride : y*dstride+dw]
		for x := range out {
			x0 := min(2*x, sw-1)
			x1 := min(2*x+1, sw-1)
			out[x] = uint8((uint(r0[x0]) + uint(r0[x1]) + uint(r1[x0]) + uint(r1[x1]) + 2) >> 2)
		}
	}
}

// chromaSize returns the size of the chroma planes of a w×h YCbCr image
// with ratio r anchored at (0,0), as image.NewYCbCr lays them out.
func chromaSize(w, h int, r image.YCbCrSubsampleRatio) (int, int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h
}

// orientations maps each EXIF orientation to the affine transform taking
// a pixel position of the stored image (w×h, continuous coordinates) to
// its displayed position: {a, b, c, d, e, f} with x' = a·x + b·y + c and
// y' = d·x + e·y + f, where c and f are given as multiples of (w, h).
var orientations = [9]struct {
	a, b, d, e float64
	cw, ch     float64 // c = cw·w + ch·h
	fw, fh     float64 // f = fw·w + fh·h
}{
	2: {a: -1, e: 1, cw: 1},          // mirrored horizontally
	3: {a: -1, e: -1, cw: 1, fh: 1},  // turned 180°
	4: {a: 1, e: -1, fh: 1},          // mirrored vertically
	5: {b: 1, d: 1},                  // transposed
	6: {b: -1, d: 1, ch: 1},          // turned 90° clockwise to display
	7: {b: -1, d: -1, ch: 1, fw: 1},  // transversed
	8: {b: 1, d: -1, fw: 1},          // turned 90° counter-clockwise to display
	1: {a: 1, e: 1}, 0: {a: 1, e: 1}, // as stored
}

// orient returns m as displayed under EXIF orientation o: m itself for 1
// (or an invalid o), otherwise a new RGBA image, turned and/or mirrored.
func orient(m image.Image, o int) image.Image {
	if o < 2 || o > 8 {
		return m
	}
	b := m.Bounds()
	w, h := float64(b.Dx()), float64(b.Dy())
	t := orientations[o]
	c := t.cw*w + t.ch*h
	f := t.fw*w + t.fh*h
	// Positions are relative to b.Min.
	mx, my := float64(b.Min.X), float64(b.Min.Y)
	s2d := f64.Aff3{
		t.a, t.b, c - t.a*mx - t.b*my,
		t.d, t.e, f - t.d*mx - t.e*my,
	}
	dw, dh := b.Dx(), b.Dy()
	if o >= 5 {
		dw, dh = dh, dw
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	draw.NearestNeighbor.Transform(dst, s2d, m, b, draw.Src, nil)
	return dst
}

// encode writes m to w in format f: JPEG at quality 85, or PNG.
func encode(w io.Writer, m image.Image, f format) error {
	if f == formatJPEG {
		return jpeg.Encode(w, m, &jpeg.Options{Quality: jpegQuality})
	}
	return png.Encode(w, m)
}

package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
)

var testLimits = limits{maxPixels: DefaultMaxPixels, maxDimension: DefaultMaxDimension}

func TestFit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ w, h, size, ww, wh int }{
		{4000, 3000, 1024, 1024, 768},
		{3000, 4000, 1024, 768, 1024},
		{4000, 3000, 128, 128, 96},
		{300, 100, 64, 64, 21},
		{300, 100, 32, 32, 11},
		{1000, 1000, 512, 512, 512},
		{20000, 1, 128, 128, 1}, // never below one pixel
		{1, 20000, 16, 1, 16},
		{400, 300, 512, 400, 300}, // never scaled up
		{400, 300, 400, 400, 300},
	} {
		if w, h := fit(tc.w, tc.h, tc.size); w != tc.ww || h != tc.wh {
			t.Errorf("fit(%d, %d, %d) = %dx%d, want %dx%d", tc.w, tc.h, tc.size, w, h, tc.ww, tc.wh)
		}
	}
}

func TestTargetsShareTheOriginalSize(t *testing.T) {
	t.Parallel()
	got := targets(400, 300, []int{128, 1024, 512, 400})
	want := []target{{400, 300, []int{1024, 512, 400}}, {128, 96, []int{128}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("targets = %v, want %v", got, want)
	}
}

// TestOrient checks every EXIF orientation pixel by pixel on a 3×2 image
// whose pixels all differ, against the EXIF definitions written out.
func TestOrient(t *testing.T) {
	t.Parallel()
	const w, h = 3, 2
	src := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			src.SetRGBA(x, y, color.RGBA{uint8(10 + x), uint8(20 + y), 0, 255})
		}
	}
	// at(o, x, y) is the stored pixel shown at (x, y) under orientation o.
	at := func(o, x, y int) (int, int) {
		switch o {
		case 2:
			return w - 1 - x, y
		case 3:
			return w - 1 - x, h - 1 - y
		case 4:
			return x, h - 1 - y
		case 5:
			return y, x
		case 6:
			return y, h - 1 - x
		case 7:
			return w - 1 - y, h - 1 - x
		case 8:
			return w - 1 - y, x
		}
		return x, y
	}
	for o := 1; o <= 8; o++ {
		got := orient(src, o)
		dw, dh := w, h
		if o >= 5 {
			dw, dh = h, w
		}
		if b := got.Bounds(); b != image.Rect(0, 0, dw, dh) {
			t.Errorf("orientation %d: bounds %v", o, b)
			continue
		}
		for y := range dh {
			for x := range dw {
				sx, sy := at(o, x, y)
				if g, want := got.At(x, y), src.At(sx, sy); g != want {
					t.Errorf("orientation %d: (%d,%d) = %v, want stored (%d,%d) %v", o, x, y, g, sx, sy, want)
				}
			}
		}
	}
	// A source not anchored at (0,0) turns the same way.
	sub := src.SubImage(image.Rect(1, 0, 3, 2))
	got := orient(sub, 6)
	if got.Bounds() != image.Rect(0, 0, 2, 2) || got.At(0, 0) != src.At(1, 1) || got.At(1, 0) != src.At(1, 0) {
		t.Errorf("orient of a sub-image: %v %v %v", got.Bounds(), got.At(0, 0), got.At(1, 0))
	}
}

// TestHalveYCbCr compares the plane-wise halving with a direct 2×2
// average for every subsampling ratio and odd and even sizes.
func TestHalveYCbCr(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(1, 2))
	ratios := []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410}
	for _, r := range ratios {
		for _, sz := range [][2]int{{8, 6}, {9, 7}, {2, 2}, {3, 5}, {17, 2}} {
			src := image.NewYCbCr(image.Rect(0, 0, sz[0], sz[1]), r)
			for _, p := range [][]byte{src.Y, src.Cb, src.Cr} {
				for i := range p {
					p[i] = uint8(rnd.IntN(256))
				}
			}
			dst := halveYCbCr(src)
			if dst.Rect != image.Rect(0, 0, sz[0]/2, sz[1]/2) || dst.SubsampleRatio != r {
				t.Fatalf("%v %v: halved to %v %v", r, sz, dst.Rect, dst.SubsampleRatio)
			}
			for y := range dst.Rect.Dy() {
				for x := range dst.Rect.Dx() {
					var sum int
					for _, d := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
						sum += int(src.Y[src.YOffset(2*x+d[0], 2*y+d[1])])
					}
					if got, want := dst.Y[dst.YOffset(x, y)], uint8((sum+2)/4); got != want {
						t.Fatalf("%v %v: Y(%d,%d) = %d, want %d", r, sz, x, y, got, want)
					}
				}
			}
			// Chroma: every sample is within the range of the source
			// samples it covers, and planes are fully written.
			cw, ch := chromaSize(dst.Rect.Dx(), dst.Rect.Dy(), r)
			if len(dst.Cb) < (ch-1)*dst.CStride+cw {
				t.Fatalf("%v %v: chroma plane too small", r, sz)
			}
		}
	}
	// A uniform image stays uniform.
	u := image.NewYCbCr(image.Rect(0, 0, 101, 77), image.YCbCrSubsampleRatio420)
	for _, p := range [][]byte{u.Y, u.Cb, u.Cr} {
		for i := range p {
			p[i] = 77
		}
	}
	h := halveYCbCr(u)
	for _, p := range [][]byte{h.Y, h.Cb, h.Cr} {
		if i := slices.IndexFunc(p, func(b byte) bool { return b != 77 }); i >= 0 {
			t.Fatalf("uniform image halved to a sample %d at %d", p[i], i)
		}
	}
}

// TestRender renders a JPEG-like YCbCr image and a paletted one into
// several sizes: right dimensions, largest first, colours where they
// belong.
func TestRender(t *testing.T) {
	t.Parallel()
	rgba := gradient(1200, 600)
	ycc := image.NewYCbCr(rgba.Bounds(), image.YCbCrSubsampleRatio420)
	for y := range 600 {
		for x := range 1200 {
			c := rgba.RGBAAt(x, y)
			yy, cb, cr := color.RGBToYCbCr(c.R, c.G, c.B)
			ycc.Y[ycc.YOffset(x, y)] = yy
			ycc.Cb[ycc.COffset(x, y)] = cb
			ycc.Cr[ycc.COffset(x, y)] = cr
		}
	}
	pal := image.NewPaletted(rgba.Bounds(), color.Palette{color.RGBA{220, 0, 20, 255}, color.RGBA{20, 0, 220, 255}})
	draw.Draw(pal, pal.Bounds(), rgba, image.Point{}, draw.Src)
	for _, src := range []image.Image{ycc, pal, rgba} {
		for _, o := range []int{1, 6} {
			var got []string
			dw, dh := 1200, 600 // as displayed
			if o == 6 {
				dw, dh = dh, dw
			}
			err := render(context.Background(), src, o, targets(dw, dh, []int{16, 300, 1024, 2000}), func(tg target, m image.Image) error {
				b := m.Bounds()
				got = append(got, fmt.Sprintf("%v:%dx%d", tg.sizes, b.Dx(), b.Dy()))
				// Stored left (red) is displayed at the top under 6.
				first, last := m.At(0, 0), m.At(b.Dx()-1, b.Dy()-1)
				if o == 6 {
					first, last = m.At(b.Dx()-1, 0), m.At(0, b.Dy()-1)
				}
				if !reddish(first) || reddish(last) {
					t.Errorf("%T orientation %d size %v: corners %v %v", src, o, tg.sizes, first, last)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"[2000]:1200x600", "[1024]:1024x512", "[300]:300x150", "[16]:16x8"}
			if o == 6 {
				want = []string{"[2000]:600x1200", "[1024]:512x1024", "[300]:150x300", "[16]:8x16"}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%T orientation %d: rendered %v, want %v", src, o, got, want)
			}
		}
	}
	// A size at or above the original gives the original dimensions.
	err := render(context.Background(), ycc, 1, targets(1200, 600, []int{4096}), func(tg target, m image.Image) error {
		if m.Bounds() != ycc.Bounds() {
			t.Errorf("full size: %v", m.Bounds())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A done context stops it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := render(ctx, ycc, 1, targets(1200, 600, []int{16}), func(target, image.Image) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("render with a done context: %v", err)
	}
}

func reddish(c color.Color) bool {
	r, _, b, _ := c.RGBA()
	return r > 2*b
}

func TestInspect(t *testing.T) {
	t.Parallel()
	jpg := encodeJPEG(t, gradient(40, 30))
	for _, tc := range []struct {
		name string
		data []byte
		want string // header, or the start of the refusal
	}{
		{"jpeg", jpg, "jpeg 40x30"},
		{"png", encodePNG(t, gradient(7, 9)), "png 7x9"},
		{"gif", encodeGIF(t, gradient(5, 3)), "gif 5x3"},
		{"empty", nil, "not an image: the file is empty"},
		{"text", []byte("hello, world\n"), "not an image: the file looks like text/plain; charset=utf-8; send PNG, JPEG or GIF"},
		{"html", []byte("<html><body>x</body></html>"), "not an image: the file looks like text/html"},
		{"webp", []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), "not an image: the file looks like image/webp"},
		{"truncated png", encodePNG(t, gradient(7, 9))[:20], "not an image: the png header is malformed"},
		{"png bomb", pngBomb(100000, 100000), "image too large: 100000x100000 pixels; the limit is 20000 pixels a side"},
		{"png too many pixels", pngBomb(10000, 10000), "image too large: 10000x10000 is 100.0 megapixels; the limit is 50.0"},
		{"png too wide", pngBomb(20001, 1), "image too large: 20001x1 pixels"},
		{"jpeg bomb", jpegBomb(65535, 65535), "image too large: 65535x65535 pixels"},
		{"gif bomb", gifBomb(65535, 65535), "image too large: 65535x65535 pixels"},
		{"zero width", pngBomb(0, 10), "not an image: the png header"},
	} {
		h, err := inspect(bytes.NewReader(tc.data), testLimits)
		got := fmt.Sprintf("%s %dx%d", h.format, h.width, h.height)
		if err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want %q…", tc.name, got, tc.want)
		}
	}
}

// TestBombAllocatesLittle checks that refusing a decompression bomb
// costs next to nothing: the whole check allocates under 1 MB where
// decoding would need 40 GB. The test is not parallel, so that no other
// test allocates meanwhile.
func TestBombAllocatesLittle(t *testing.T) {
	bombs := [][]byte{pngBomb(100000, 100000), jpegBomb(65535, 65535), gifBomb(65535, 65535)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, b := range bombs {
		_, err := inspect(bytes.NewReader(b), testLimits)
		var rej *rejectError
		if !errors.As(err, &rej) {
			t.Fatalf("bomb not refused: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("refusing three bombs allocated %d bytes", d)
	}
}

// TestDecodeGIFFrame places a GIF whose first frame is smaller than its
// screen on a canvas of the screen's size.
func TestDecodeGIFFrame(t *testing.T) {
	t.Parallel()
	frame := image.NewPaletted(image.Rect(2, 3, 6, 5), color.Palette{color.Transparent, color.RGBA{255, 0, 0, 255}})
	for i := range frame.Pix {
		frame.Pix[i] = 1
	}
	var b bytes.Buffer
	err := gif.EncodeAll(&b, &gif.GIF{Image: []*image.Paletted{frame}, Delay: []int{0},
		Config: image.Config{Width: 10, Height: 8, ColorModel: frame.Palette}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := inspect(bytes.NewReader(b.Bytes()), testLimits)
	if err != nil || h.width != 10 || h.height != 8 {
		t.Fatalf("inspect: %+v %v", h, err)
	}
	m, err := decode(bytes.NewReader(b.Bytes()), h)
	if err != nil {
		t.Fatal(err)
	}
	if m.Bounds() != image.Rect(0, 0, 10, 8) {
		t.Fatalf("bounds %v", m.Bounds())
	}
	if _, _, _, a := m.At(0, 0).RGBA(); a != 0 {
		t.Errorf("outside the frame: %v", m.At(0, 0))
	}
	if r, _, _, a := m.At(3, 4).RGBA(); r != 0xffff || a != 0xffff {
		t.Errorf("inside the frame: %v", m.At(3, 4))
	}
}

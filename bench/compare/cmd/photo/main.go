// Command photo writes a JPEG that stands in for a camera photo in the
// thumbnail benchmarks: by default 4000×3000 (12 megapixels), with smooth
// gradients, edges and fine noise, so that its file size and decoding cost
// are close to a real photo's. The output depends only on the flags.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
)

func main() {
	w := flag.Int("width", 4000, "width in pixels")
	h := flag.Int("height", 3000, "height in pixels")
	q := flag.Int("quality", 90, "JPEG quality, 1..100")
	seed := flag.Uint64("seed", 1, "seed of the noise")
	out := flag.String("o", "photo.jpg", "output file")
	flag.Parse()
	if *w < 1 || *h < 1 || *w > 20000 || *h > 20000 || *q < 1 || *q > 100 {
		fmt.Fprintln(os.Stderr, "photo: width and height must be 1..20000 and quality 1..100")
		os.Exit(2)
	}
	if err := write(*out, *w, *h, *q, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "photo:", err)
		os.Exit(1)
	}
}

func write(path string, w, h, q int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			// A sky-to-ground gradient, a few hard-edged shapes, and
			// per-pixel noise like a sensor's.
			n := int(r.IntN(24)) - 12
			rr, gg, bb := 40+x*160/w, 90+y*120/h, 200-y*150/h
			if (x/250+y/250)%5 == 0 {
				rr, gg, bb = 220-rr/2, gg/2, 60
			}
			m.SetRGBA(x, y, color.RGBA{clamp(rr + n), clamp(gg + n), clamp(bb + n), 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := jpeg.Encode(bw, m, &jpeg.Options{Quality: q}); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func clamp(v int) uint8 { return uint8(max(0, min(255, v))) }

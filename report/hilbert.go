package report

// The Hilbert curve maps a line (addresses in order) onto a square so that
// addresses close on the line stay close on the square, and every aligned
// block of 4^k addresses (a /24, a /16, ...) is a square or a 2:1 rectangle
// of its own: the classic picture of an IPv4 scan.

// hilbertXY is the cell (x, y) of position d on the curve over an n×n grid
// (n a power of two).
func hilbertXY(n, d uint32) (x, y uint32) {
	t := d
	for s := uint32(1); s < n; s *= 2 {
		rx := 1 & (t / 2)
		ry := 1 & (t ^ rx)
		x, y = rot(s, x, y, rx, ry)
		x += s * rx
		y += s * ry
		t /= 4
	}
	return x, y
}

// hilbertD is the inverse of hilbertXY.
func hilbertD(n, x, y uint32) (d uint32) {
	for s := n / 2; s > 0; s /= 2 {
		var rx, ry uint32
		if x&s > 0 {
			rx = 1
		}
		if y&s > 0 {
			ry = 1
		}
		d += s * s * ((3 * rx) ^ ry)
		x, y = rot(n, x, y, rx, ry)
	}
	return d
}

func rot(n, x, y, rx, ry uint32) (uint32, uint32) {
	if ry == 0 {
		if rx == 1 {
			x = n - 1 - x
			y = n - 1 - y
		}
		x, y = y, x
	}
	return x, y
}

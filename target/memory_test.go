package target

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestParseFileMemory: a host file costs about its size, kept and while it
// is read. Names lie back to back with a length byte, with no string or
// index entry per name and no garbage per line; scattered addresses are 4
// bytes each until sorted, then 8-byte IPv4 spans. The old layout (a
// string per line, an arena that doubled, a 16-byte index and a dedup
// table per name; a 32-byte interval per scattered address) kept 1.5x
// (names) and 2.9x (addresses), and allocated 10x and 14x.
func TestParseFileMemory(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 200_000
	}
	// Every other address of 127.0.0.0/8, shuffled: no two consecutive.
	perm := rand.New(rand.NewPCG(1, 2)).Perm(n)
	for _, tt := range []struct {
		name string
		line func(i int) string
		last string
	}{
		{"names", func(i int) string { return fmt.Sprintf("h%07d.localhost", i) }, fmt.Sprintf("h%07d.localhost", n-1)},
		{"scattered addresses", func(i int) string {
			a := 2 * perm[i]
			return fmt.Sprintf("127.%d.%d.%d", a>>16, a>>8&0xff, a&0xff)
		}, fmt.Sprintf("127.%d.%d.%d", (2*n-2)>>16, (2*n-2)>>8&0xff, (2*n-2)&0xff)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hosts")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w := bufio.NewWriter(f)
			for i := 0; i < n; i++ {
				fmt.Fprintln(w, tt.line(i))
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			size := float64(st.Size())

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s, err := Parse([]string{"@" + path}, ParseOptions{MaxTargets: uint64(n)})
			if err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			allocated := float64(after.TotalAlloc - before.TotalAlloc)
			runtime.GC()
			runtime.ReadMemStats(&after)
			kept := float64(after.HeapAlloc) - float64(before.HeapAlloc)
			if s.Len() != uint64(n) || s.At(uint64(n-1)).Name() != tt.last {
				t.Fatalf("Len = %d, last %+v, want %d, %s", s.Len(), s.At(uint64(n-1)), n, tt.last)
			}
			runtime.KeepAlive(s)
			t.Logf("%d lines, file %.1f MB: kept %.1f MB (%.2fx, %.1f bytes a line), allocated %.1f MB (%.2fx)",
				n, size/1e6, kept/1e6, kept/size, kept/float64(n), allocated/1e6, allocated/size)
			if kept > 1.1*size+(2<<20) {
				t.Errorf("the Set keeps %.2fx the file's size, want at most 1.1x", kept/size)
			}
			// Allocated bounds the heap's peak: for names, the names and the
			// dedup table (4 to 8 bytes a name, twice over as it grows),
			// dropped at the end.
			if allocated > 2*size+(4<<20) {
				t.Errorf("Parse allocated %.2fx the file's size, want at most 2x", allocated/size)
			}
		})
	}
}

package target

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestParseFileMemory: a list of names from a file costs about the file's
// size, kept and while it is read: the names back to back with a length
// byte, no string or index entry per name, no copy of the list, no garbage
// per line. The old layout (a string per line, then an arena that doubled,
// a 16-byte index and a dedup table per name) kept 1.5x and allocated 10x.
func TestParseFileMemory(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 200_000
	}
	path := filepath.Join(t.TempDir(), "names")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "h%07d.localhost\n", i)
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
	runtime.KeepAlive(s)
	if s.Len() != uint64(n) || s.At(uint64(n-1)).Host != fmt.Sprintf("h%07d.localhost", n-1) {
		t.Fatalf("Len = %d, last %+v", s.Len(), s.At(uint64(n-1)))
	}
	t.Logf("%d names, file %.1f MB: kept %.1f MB (%.2fx, %.1f bytes a name), allocated %.1f MB (%.2fx)",
		n, size/1e6, kept/1e6, kept/size, kept/float64(n), allocated/1e6, allocated/size)
	if kept > 1.1*size+(2<<20) {
		t.Errorf("the Set keeps %.2fx the file's size, want at most 1.1x", kept/size)
	}
	// Allocated bounds the heap's peak: the names, and the dedup table
	// (4 to 8 bytes a name, twice over as it grows), dropped at the end.
	if allocated > 2*size+(4<<20) {
		t.Errorf("Parse allocated %.2fx the file's size, want at most 2x", allocated/size)
	}
}

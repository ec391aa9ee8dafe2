package output

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fanout/fanout/job"
)

func TestOutDirWritesPerHostFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "out")
	o, err := NewOutDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []job.Result{
		{Host: "127.0.0.1", Stdout: []byte("one\n"), Stderr: []byte("warn\n")},
		{Host: "web/01", Stdout: []byte("two\n")},
		{Host: "fd00::1", Stdout: []byte("six\n")},
	} {
		if err := o.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()
	for file, want := range map[string]string{
		"127.0.0.1.stdout": "one\n", "127.0.0.1.stderr": "warn\n",
		"web_01.stdout": "two\n", "web_01.stderr": "", "fd00::1.stdout": "six\n",
	} {
		got, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", file, got, err, want)
		}
	}
}

func TestOutDirUnwritable(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := NewOutDir(filepath.Join(f, "sub")); err == nil {
		t.Fatal("NewOutDir under a regular file: no error")
	}
}

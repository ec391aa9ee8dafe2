package ssh

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// An unusable known_hosts, ssh config or identity file fails New with an
// error that names the file and wraps the cause, so that a caller can tell
// (errors.Is) a missing file from a directory or one it may not write.
func TestFileErrorsWrapTheirCause(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	dir := t.TempDir() // a directory where a file is expected
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	global := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(global, []byte("GlobalKnownHostsFile "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    Config
		want error
	}{
		{"read", Config{HostKey: HostKeyStrict, KnownHosts: []string{dir}}, syscall.EISDIR},
		{"global read", Config{HostKey: HostKeyStrict, SSHConfig: global}, syscall.EISDIR},
		{"accept-new mkdir", Config{HostKey: HostKeyAcceptNew, KnownHosts: []string{filepath.Join(file, "known_hosts")}}, syscall.ENOTDIR},
		{"accept-new open", Config{HostKey: HostKeyAcceptNew, KnownHosts: []string{dir}}, syscall.EISDIR},
		{"ssh config", Config{SSHConfig: dir}, syscall.EISDIR},
		{"identity file", Config{Identities: []string{filepath.Join(dir, "missing")}}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.Command = "true"
			j, err := New(tt.c, home.env())
			if err == nil {
				j.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("New: %v: errors.Is(err, %v) is false", err, tt.want)
			}
		})
	}
}

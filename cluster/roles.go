package cluster

// Roles: who may do what on the cluster, enforced by the NATS server's
// per-subject permissions (not by checks in fanout's own code, which a
// client of its own could skip).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// Role is what a cluster user may do.
type Role string

// The roles. A worker pulls tasks, reads the specs they belong to and
// publishes results and heartbeats; a submitter creates sweeps (specs and
// tasks) and reads results, specs and heartbeats; an admin may do anything,
// deleting included. A token or a single --nkey-seed is an admin credential.
const (
	RoleWorker    Role = "worker"
	RoleSubmitter Role = "submitter"
	RoleAdmin     Role = "admin"
)

// Roles lists the roles, for messages.
var Roles = []Role{RoleWorker, RoleSubmitter, RoleAdmin}

// User is one entry of a users file: a name, a role and one way to prove
// it, an nkey public key (the client holds the seed; nothing secret crosses
// the wire) or a bcrypt hash of a password.
type User struct {
	Name     string `json:"name"`
	Role     Role   `json:"role"`
	Nkey     string `json:"nkey,omitempty"`     // public user key, U...
	Password string `json:"password,omitempty"` // bcrypt hash, $2a$... (never the password)
}

// usersFile is the users file: {"users": [{...}, ...]}.
type usersFile struct {
	Users []User `json:"users"`
}

// maxUsersFile bounds what ReadUsers reads.
const maxUsersFile = 4 << 20

// ReadUsers reads and checks a users file.
func ReadUsers(path string) ([]User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxUsersFile+1))
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if len(b) > maxUsersFile {
		return nil, fmt.Errorf("users file %s: over %d bytes", path, maxUsersFile)
	}
	var uf usersFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&uf); err != nil {
		return nil, fmt.Errorf(`users file %s: %w (want {"users": [{"name": N, "role": R, "nkey": U... or "password": bcrypt hash}, ...]})`, path, err)
	}
	if err := checkUsers(uf.Users); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return uf.Users, nil
}

func checkUsers(users []User) error {
	names := map[string]bool{}
	keys := map[string]bool{}
	for i, u := range users {
		if err := u.check(); err != nil {
			return fmt.Errorf("user %d (%q): %w", i+1, u.Name, err)
		}
		if names[u.Name] {
			return fmt.Errorf("user %d: name %q given twice", i+1, u.Name)
		}
		names[u.Name] = true
		if u.Nkey != "" {
			if keys[u.Nkey] {
				return fmt.Errorf("user %d (%q): nkey %s given twice", i+1, u.Name, u.Nkey)
			}
			keys[u.Nkey] = true
		}
	}
	return nil
}

func (u User) check() error {
	if u.Name == "" || len(u.Name) > 64 || strings.ContainsAny(u.Name, " \t\r\n.*>") {
		return errors.New("name: want 1-64 characters, no blanks, dots or wildcards")
	}
	if _, err := ParseRole(string(u.Role)); err != nil {
		return err
	}
	switch {
	case u.Nkey != "" && u.Password != "":
		return errors.New("give an nkey or a password hash, not both")
	case u.Nkey != "":
		if !nkeys.IsValidPublicUserKey(u.Nkey) {
			return fmt.Errorf("nkey %q: not a user public key (U...)", u.Nkey)
		}
	case u.Password != "":
		if _, err := bcrypt.Cost([]byte(u.Password)); err != nil {
			// A plaintext password in a file is refused: store its hash
			// (fanout server --add-user NAME --password-stdin prints one).
			return errors.New("password: want a bcrypt hash ($2a$...), not a password")
		}
	default:
		return errors.New("no credential: give an nkey (public key) or a password (bcrypt hash)")
	}
	return nil
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("role %q: want worker, submitter or admin", s)
}

// AddUser adds user to the users file at path (created, mode 0600, when
// missing), refusing a name already there.
func AddUser(path string, u User) error {
	if err := u.check(); err != nil {
		return fmt.Errorf("user %q: %w", u.Name, err)
	}
	var uf usersFile
	if _, err := os.Stat(path); err == nil {
		users, err := ReadUsers(path)
		if err != nil {
			return err
		}
		uf.Users = users
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("users file: %w", err)
	}
	uf.Users = append(uf.Users, u)
	if err := checkUsers(uf.Users); err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	b, err := json.MarshalIndent(uf, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(path, append(b, '\n'))
}

// HashPassword returns the bcrypt hash a users file stores for password.
func HashPassword(password []byte) (string, error) {
	if len(password) < MinTokenLen {
		return "", fmt.Errorf("password: %d characters, want at least %d", len(password), MinTokenLen)
	}
	h, err := bcrypt.GenerateFromPassword(password, 11)
	return string(h), err
}

// writePrivate writes b to path (mode 0600) through a temporary file in the
// same directory, so a reader never sees half a file.
func writePrivate(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Subjects and JetStream API subjects the roles are granted.
const (
	jsAPI = "$JS.API."
	kvPre = "$KV."
)

// rolePermissions are the NATS permissions of role; nil is everything.
//
// JetStream is driven by requests on $JS.API.<op>.<stream>[.<consumer>],
// publishes on stream subjects (a KV put is a publish on $KV.<bucket>.<key>)
// and acks on $JS.ACK.<stream>.<consumer>.> (or the v2 form with domain and
// account hash in front of the stream). Replies come to the client's inbox.
// What a role must not do is simply not allowed; the deny lists repeat the
// forbidden writes that matter so a later widening of an allow list cannot
// let them through.
func rolePermissions(r Role) *server.Permissions {
	kvStream := func(b string) string { return "KV_" + b }
	info := func(streams ...string) []string {
		var out []string
		for _, s := range streams {
			out = append(out, jsAPI+"STREAM.INFO."+s)
		}
		return out
	}
	// get reads stored messages of stream s (by sequence or last on a subject).
	get := func(s string) []string {
		return []string{jsAPI + "STREAM.MSG.GET." + s, jsAPI + "DIRECT.GET." + s, jsAPI + "DIRECT.GET." + s + ".>"}
	}
	// consume creates, reads, pulls from and removes consumers of stream s
	// (ordered consumers and KV watchers are such ephemeral consumers).
	consume := func(s string) []string {
		return []string{
			jsAPI + "CONSUMER.CREATE." + s, jsAPI + "CONSUMER.CREATE." + s + ".>",
			jsAPI + "CONSUMER.INFO." + s + ".*", jsAPI + "CONSUMER.DELETE." + s + ".*",
			jsAPI + "CONSUMER.MSG.NEXT." + s + ".*",
			"$JS.FC." + s + ".>", "$JS.FC.*.*." + s + ".>",
		}
	}
	streams := info(kvStream(SweepsBucket), kvStream(WorkersBucket), TasksStream, ResultsStream,
		kvStream(WatchesBucket), RoundsStream, WatchResultsStream, EventsStream)
	inbox := &server.SubjectPermission{Allow: []string{"_INBOX.>"}}
	deleting := []string{jsAPI + "STREAM.DELETE.>", jsAPI + "STREAM.PURGE.>", jsAPI + "STREAM.MSG.DELETE.>",
		jsAPI + "STREAM.CREATE.>", jsAPI + "STREAM.UPDATE.>", jsAPI + "CONSUMER.DELETE." + TasksStream + ".>"}
	switch r {
	case RoleWorker:
		pub := append(streams,
			// The shared task consumer: look it up, create it when it is
			// missing, pull from it and ack its messages.
			jsAPI+"CONSUMER.INFO."+TasksStream+"."+WorkerConsumer,
			jsAPI+"CONSUMER.CREATE."+TasksStream+"."+WorkerConsumer,
			jsAPI+"CONSUMER.CREATE."+TasksStream+"."+WorkerConsumer+".>",
			jsAPI+"CONSUMER.DURABLE.CREATE."+TasksStream+"."+WorkerConsumer,
			jsAPI+"CONSUMER.MSG.NEXT."+TasksStream+"."+WorkerConsumer,
			"$JS.ACK."+TasksStream+"."+WorkerConsumer+".>",
			"$JS.ACK.*.*."+TasksStream+"."+WorkerConsumer+".>",
			// Heartbeats and results.
			kvPre+WorkersBucket+".>",
			resultsPrefix+">",
		)
		pub = append(pub, get(kvStream(SweepsBucket))...) // specs
		pub = append(pub, get(ResultsStream)...)          // a redelivered task reads back what is stored
		// Watches: read their records and clocks, follow the ticks, list
		// the live workers (ownership), store results, done marks and
		// change events, and read them back.
		pub = append(pub, wresultsPrefix+">", eventsPrefix+">")
		pub = append(pub, get(kvStream(WatchesBucket))...)
		pub = append(pub, get(RoundsStream)...)
		pub = append(pub, consume(RoundsStream)...)
		pub = append(pub, get(WatchResultsStream)...)
		pub = append(pub, get(kvStream(WorkersBucket))...)
		pub = append(pub, consume(kvStream(WorkersBucket))...)
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: pub, Deny: append(deleting, kvPre+SweepsBucket+".>", tasksPrefix+">",
				kvPre+WatchesBucket+".>", roundsPrefix+">")},
			Subscribe: inbox,
		}
	case RoleSubmitter:
		pub := append(streams,
			kvPre+SweepsBucket+".>", // specs
			tasksPrefix+">",
			kvPre+WatchesBucket+".>", // watch records and stop marks
			roundsPrefix+">",         // watch clocks (schedules) and their removal
		)
		for _, s := range []string{kvStream(SweepsBucket), kvStream(WorkersBucket), ResultsStream,
			kvStream(WatchesBucket), RoundsStream, WatchResultsStream, EventsStream} {
			pub = append(pub, get(s)...)
			pub = append(pub, consume(s)...)
		}
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: pub, Deny: append(deleting,
				resultsPrefix+">", kvPre+WorkersBucket+".>", wresultsPrefix+">", eventsPrefix+">",
				jsAPI+"CONSUMER.MSG.NEXT."+TasksStream+".>", "$JS.ACK."+TasksStream+".>", "$JS.ACK.*.*."+TasksStream+".>")},
			Subscribe: inbox,
		}
	}
	return nil // admin
}

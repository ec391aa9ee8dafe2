package cluster

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

// The decoders of what comes off the bus take any bytes without panicking,
// and what they accept is within the bounds its users rely on.

func FuzzDecodeBatch(f *testing.F) {
	zero := 0
	start := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	b, _, _ := encodeBatch([]job.Result{
		{Index: 1, Host: "127.0.0.1", Addr: "127.0.0.1", Job: "exec", Status: job.Up, ExitCode: &zero, Stdout: []byte("x"), Stderr: []byte{}, Start: start, End: start, Worker: "w"},
		{Index: 1 << 40, Host: "h", Port: 22, Job: "ssh", Status: job.Down, Class: job.ClassTimeout, Truncated: true},
	}, 1<<20)
	f.Add(b)
	f.Add(wireMagic)
	f.Add([]byte{})
	f.Add([]byte("\xff\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Add(append(append([]byte{}, wireMagic...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01))
	f.Add(append(append([]byte{}, wireMagic...), 0x33, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := decodeBatch(data)
		if err != nil {
			return
		}
		// Every result took at least a few bytes of the message.
		if len(rs) > len(data) {
			t.Fatalf("%d results from %d bytes", len(rs), len(data))
		}
		for _, r := range rs {
			if len(r.Stdout)+len(r.Stderr) > len(data) {
				t.Fatalf("outputs of %d bytes from a %d-byte message", len(r.Stdout)+len(r.Stderr), len(data))
			}
		}
		// What decodes encodes again to the same results.
		if len(rs) > 0 {
			again, n, _ := encodeBatch(rs, 1<<30)
			back, err := decodeBatch(again)
			if err != nil || n != len(rs) || len(back) != len(rs) {
				t.Fatalf("re-encoded batch: %d of %d results, err %v", len(back), len(rs), err)
			}
		}
	})
}

func FuzzDecodeTask(f *testing.F) {
	good := task{Sweep: "s1", Chunk: 3, Lo: 300, Hi: 400, Job: "ping", Rev: 7, SHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	b, _ := json.Marshal(good)
	f.Add(taskSubject("s1", 3), b)
	f.Add(taskSubject("s1", 4), b)
	f.Add("fanout.tasks.s1.3", []byte(`{"sweep":"s1","chunk":3,"lo":5,"hi":1}`))
	f.Add("", []byte("null"))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		tk, err := decodeTask(subject, data)
		if err != nil {
			return
		}
		if tk.Lo >= tk.Hi || !ValidSweepID(tk.Sweep) || subject != taskSubject(tk.Sweep, tk.Chunk) || tk.Rev == 0 {
			t.Fatalf("accepted %+v on %q", tk, subject)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	rec := Record{ID: "s1", Spec: sleepSpec(300, 1), Total: 300, TaskSize: 100, Tasks: 3, Retention: time.Hour}
	b, _ := json.Marshal(rec)
	f.Add("s1", b)
	rec.Total, rec.TaskSize, rec.Tasks = 1<<62, 1<<62, 1
	b, _ = json.Marshal(rec)
	f.Add("s1", b)
	f.Add("s1", []byte(`{"id":"s1","spec":{"job":"tcp","job_options":{"ports":[1,2]},"targets":["::/0"],"allow_huge":true,"max_targets":18446744073709551615},"total":5,"task_size":0,"tasks":0}`))
	f.Add("x", []byte(`{"id":"x","spec":{"job":"exec","targets":["@/etc/passwd"]},"total":1,"task_size":1,"tasks":1}`))
	f.Fuzz(func(t *testing.T, id string, data []byte) {
		rec, err := decodeRecord(id, data)
		if err != nil {
			return
		}
		if rec.ID != id || (rec.Total > 0 && rec.TaskSize == 0) || rec.Spec.Standalone() != nil {
			t.Fatalf("accepted %+v", rec)
		}
		// What a collector does next: bounded before it sizes anything.
		set, order, err := rec.visit(1 << 16)
		if err != nil {
			return
		}
		if order.Len() != rec.Total || rec.Total > 1<<16 {
			t.Fatalf("visit: %d targets, record %d", order.Len(), rec.Total)
		}
		if rec.Total > 0 {
			k := rec.Total - 1
			chk := &checker{rec: rec, set: set, order: order}
			if _, err := chk.check(k/rec.TaskSize, &job.Result{Index: order.At(k)}); err == nil {
				t.Fatal("an empty result passed for the target at the last position")
			}
			_ = newBitmap(rec.Total)
		}
	})
}

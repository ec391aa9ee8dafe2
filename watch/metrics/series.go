package metrics

// The per-target series (fanout_up, fanout_rtt_seconds) bypass the registry:
// each target's label set is escaped and rendered once, when the target
// first appears, and kept while it stays in the watch's rounds; a round
// records a value per target, and the first scrape of a finished round
// writes each series as name + label set + value, with appends only. Through
// client_golang's registry, 20,000 series were checked, sorted and encoded
// anew at every scrape (104 ms a scrape at load 14).

import (
	"bytes"
	"compress/flate"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/fanout/fanout/job"
)

// labelTable is the observer goroutine's table of per-target label sets.
type labelTable struct {
	watch string           // the watch label the label sets were rendered with
	slot  map[string]int32 // target label -> its slot
	lset  []string         // by slot: `{target="...",watch="..."} `, escaped
	cur   []int32          // by slot: the slot's sample in this round, or -1
	buf   []byte           // scratch: a Result's target label
}

// reset empties the table for watch w.
func (t *labelTable) reset(w string) {
	t.watch = w
	t.slot = map[string]int32{}
	t.lset, t.cur = t.lset[:0], t.cur[:0]
}

// startRound readies the table for a round of watch w.
func (t *labelTable) startRound(w string) {
	if t.slot == nil || w != t.watch {
		t.reset(w)
	}
	for i := range t.cur {
		t.cur[i] = -1
	}
}

// lookup is the slot of r's target, added when it is new.
func (t *labelTable) lookup(r *job.Result) int32 {
	b := appendTarget(t.buf[:0], r)
	if !utf8.Valid(b) {
		b = append(b[:0], strings.ToValidUTF8(string(b), "\uFFFD")...)
	}
	t.buf = b
	if i, ok := t.slot[string(b)]; ok {
		return i
	}
	i := int32(len(t.lset))
	t.slot[string(b)] = i
	t.lset = append(t.lset, renderLabels(string(b), t.watch))
	t.cur = append(t.cur, -1)
	return i
}

// compact drops the slots of targets that left the set, once they are most
// of the table: a watch whose list keeps changing holds at most about twice
// the labels of one round. live is this round's samples.
func (t *labelTable) compact(live []sample) {
	if len(t.lset) <= 2*len(live)+64 {
		return
	}
	slot := make(map[string]int32, len(live))
	lset := make([]string, 0, len(live))
	for k, i := range t.slot {
		if t.cur[i] >= 0 {
			slot[k] = int32(len(lset))
			lset = append(lset, t.lset[i])
		}
	}
	t.slot, t.lset, t.cur = slot, lset, make([]int32, len(lset))
	for i := range t.cur {
		t.cur[i] = -1
	}
}

// appendTarget appends the target's label value: the host as given, with its
// port when it has one (net.JoinHostPort's form), without allocating.
func appendTarget(b []byte, r *job.Result) []byte {
	if r.Port == 0 {
		return append(b, r.Host...)
	}
	h := strings.Trim(r.Host, "[]")
	if strings.IndexByte(h, ':') >= 0 {
		b = append(b, '[')
		b = append(b, h...)
		b = append(b, ']')
	} else {
		b = append(b, h...)
	}
	b = append(b, ':')
	return strconv.AppendInt(b, int64(r.Port), 10)
}

// renderLabels is a series' label set and the space before its value.
func renderLabels(target, watch string) string {
	return `{target="` + labelEscaper.Replace(target) + `",watch="` + labelEscaper.Replace(watch) + `"} `
}

// labelEscaper escapes a label value for the text format.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// sample is one target's value in a round.
type sample struct {
	lset string // its label set, shared with the table
	up   bool
	rtt  int64 // ns; 0 when none was measured
}

// snapshot is one finished round's per-target values; immutable once
// published, its text (and gzipped text) rendered by the first scrape that
// needs it and shared by every later scrape of the round.
type snapshot struct {
	samples []sample

	textOnce sync.Once
	text     []byte

	gzOnce sync.Once
	gz     deflated
}

const (
	upHead  = "# HELP fanout_up Whether the target was up in the watch's last finished round (1) or not (0), as blackbox_exporter's probe_success.\n# TYPE fanout_up gauge\n"
	rttHead = "# HELP fanout_rtt_seconds The target's round-trip (connect, reply) time in the watch's last finished round; absent when it measured none.\n# TYPE fanout_rtt_seconds gauge\n"
)

// rendered is the snapshot's per-target families in the text format;
// empty without samples.
func (s *snapshot) rendered() []byte {
	if s == nil {
		return nil
	}
	s.textOnce.Do(func() {
		if len(s.samples) == 0 {
			return
		}
		n, rtts := len(upHead)+len(rttHead), 0
		for _, x := range s.samples {
			n += len("fanout_up") + len(x.lset) + 2
			if x.rtt > 0 {
				n += len("fanout_rtt_seconds") + len(x.lset) + 22
				rtts++
			}
		}
		b := make([]byte, 0, n)
		b = append(b, upHead...)
		for _, x := range s.samples {
			b = append(b, "fanout_up"...)
			b = append(b, x.lset...)
			if x.up {
				b = append(b, '1', '\n')
			} else {
				b = append(b, '0', '\n')
			}
		}
		if rtts > 0 {
			b = append(b, rttHead...)
			for _, x := range s.samples {
				if x.rtt > 0 {
					b = append(b, "fanout_rtt_seconds"...)
					b = append(b, x.lset...)
					b = appendSeconds(b, x.rtt)
					b = append(b, '\n')
				}
			}
		}
		s.text = b
	})
	return s.text
}

// appendSeconds appends ns nanoseconds (> 0) as exact decimal seconds.
func appendSeconds(b []byte, ns int64) []byte {
	b = strconv.AppendInt(b, ns/1e9, 10)
	frac := ns % 1e9
	if frac == 0 {
		return b
	}
	var d [10]byte
	d[0] = '.'
	for i := 9; i >= 1; i-- {
		d[i] = byte('0' + frac%10)
		frac /= 10
	}
	end := 10
	for d[end-1] == '0' {
		end--
	}
	return append(b, d[:end]...)
}

// deflated is a raw deflate stream that does not end the stream (it ends
// with a sync flush, byte-aligned and not final), so that more blocks may
// follow it, with the CRC-32 and length of what it holds: the head of a gzip
// member.
type deflated struct {
	data []byte
	crc  uint32
	size uint32
}

// gzipped is the snapshot's text deflated once, for every scrape of it that
// asked for gzip.
func (s *snapshot) gzipped() *deflated {
	if s == nil {
		return &deflated{}
	}
	s.gzOnce.Do(func() {
		text := s.rendered()
		if len(text) == 0 {
			return
		}
		var b bytes.Buffer
		b.Grow(len(text) / 8)
		fw := getFlate(&b)
		fw.Write(text)
		fw.Flush()
		flatePool.Put(fw)
		s.gz = deflated{data: b.Bytes(), crc: crc32.ChecksumIEEE(text), size: uint32(len(text))}
	})
	return &s.gz
}

// flatePool holds deflate writers: each is several hundred kB of tables.
var flatePool sync.Pool

func getFlate(w *bytes.Buffer) *flate.Writer {
	if fw, ok := flatePool.Get().(*flate.Writer); ok {
		fw.Reset(w)
		return fw
	}
	fw, _ := flate.NewWriter(w, flate.BestSpeed) // BestSpeed is a valid level: no error
	return fw
}

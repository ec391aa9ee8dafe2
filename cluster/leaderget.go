package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errCodeNoMessage is JetStream's error code for a message get that finds
// nothing ("no message found").
const errCodeNoMessage = 10037

// leaderGet reads a stored message from the leader of stream: the one at
// seq or, with seq 0, the last one on subject; either way it must be on
// subject and not a KV delete or purge marker, else jetstream.ErrKeyNotFound.
//
// A KV bucket answers gets directly from any of its replicas, and one that
// has not stored the message yet (a server of the cluster that was down,
// or is behind after a leader died) answers "not found" for a record that
// exists. A worker that took that for final dropped the tasks of a sweep
// just submitted, and its Collect never returned: the leader's answer is
// the one that drops a task.
func leaderGet(ctx context.Context, nc *nats.Conn, stream, subject string, seq uint64) ([]byte, error) {
	var req any = struct {
		Seq uint64 `json:"seq"`
	}{seq}
	if seq == 0 {
		req = struct {
			Last string `json:"last_by_subj"`
		}{subject}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, jsAPI+"STREAM.MSG.GET."+stream, b)
	if err != nil {
		return nil, fmt.Errorf("stream %s: get from its leader: %w", stream, err)
	}
	var resp struct {
		Message *struct {
			Subject string `json:"subject"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("stream %s: get from its leader: malformed answer: %w", stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == errCodeNoMessage:
		return nil, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return nil, fmt.Errorf("stream %s: get from its leader: %w", stream, resp.Error)
	case resp.Message == nil:
		return nil, fmt.Errorf("stream %s: get from its leader: an answer without a message", stream)
	case resp.Message.Subject != subject, bytes.Contains(resp.Message.Header, []byte("KV-Operation")):
		return nil, jetstream.ErrKeyNotFound
	}
	return resp.Message.Data, nil
}

package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The JetStream API's stream snapshot and restore, as the upgrade of a
// single hub's data directory uses them (upgrade.go): a snapshot comes in
// chunks to a subject of ours, with flow control; a restore goes out in
// chunks, each a request.

// snapshotMeta is the config and state a snapshot was taken at, which its
// restore gives back to the server.
type snapshotMeta struct {
	Config server.StreamConfig `json:"config"`
	State  server.StreamState  `json:"state"`
}

// apiError is a JetStream API response's error, or nil.
func apiError(e *server.ApiError) error {
	if e != nil {
		return &jsAPIError{code: e.ErrCode, desc: e.Description}
	}
	return nil
}

// jsAPIError is an error the JetStream API answered with.
type jsAPIError struct {
	code uint16
	desc string
}

func (e *jsAPIError) Error() string { return fmt.Sprintf("%d: %s", e.code, e.desc) }

// errRestoreNameInUse: the cluster holds an assignment of the stream, such
// as one a restore cut short left (nats-server leaves a failed restore's
// assignment for an explicit delete).
const errRestoreNameInUse = 10130

// isAPIError reports whether err is the JetStream API's error code.
func isAPIError(err error, code uint16) bool {
	var e *jsAPIError
	return errors.As(err, &e) && e.code == code
}

// snapshotStream asks the server for a snapshot of stream name, with its
// consumers, and writes it to up/NAME.snap and its config and state to
// up/NAME.json. The server sends the snapshot in chunks to a subject of
// ours; a chunk with a reply subject asks for an answer before the server
// sends more (flow control); an empty message ends it, its Status header
// says whether it went well.
func snapshotStream(ctx context.Context, nc *nats.Conn, name, up string) (upgradeSnapshot, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return upgradeSnapshot{}, err
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return upgradeSnapshot{}, err
	}
	req, err := json.Marshal(server.JSApiStreamSnapshotRequest{DeliverSubject: inbox, ChunkSize: 256 << 10, WindowSize: 8 << 20})
	if err != nil {
		return upgradeSnapshot{}, err
	}
	msg, err := nc.RequestWithContext(ctx, fmt.Sprintf(server.JSApiStreamSnapshotT, name), req)
	if err != nil {
		return upgradeSnapshot{}, fmt.Errorf("request: %w", err)
	}
	var resp server.JSApiStreamSnapshotResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return upgradeSnapshot{}, fmt.Errorf("response %q: %w", msg.Data, err)
	}
	if err := apiError(resp.Error); err != nil {
		return upgradeSnapshot{}, err
	}
	if resp.Config == nil || resp.State == nil {
		return upgradeSnapshot{}, fmt.Errorf("response %q holds no config or state", msg.Data)
	}
	path := filepath.Join(up, name+".snap")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return upgradeSnapshot{}, err
	}
	defer f.Close()
	var n int64
	for {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := sub.NextMsgWithContext(mctx)
		cancel()
		if err != nil {
			return upgradeSnapshot{}, fmt.Errorf("after %d bytes: %w", n, err)
		}
		if len(m.Data) == 0 {
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return upgradeSnapshot{}, fmt.Errorf("after %d bytes: the server says %s %s", n, st, m.Header.Get("Description"))
			}
			break
		}
		if _, err := f.Write(m.Data); err != nil {
			return upgradeSnapshot{}, err
		}
		n += int64(len(m.Data))
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil {
				return upgradeSnapshot{}, err
			}
		}
	}
	if err := f.Sync(); err != nil {
		return upgradeSnapshot{}, err
	}
	if err := f.Close(); err != nil {
		return upgradeSnapshot{}, err
	}
	meta, err := json.MarshalIndent(snapshotMeta{Config: *resp.Config, State: *resp.State}, "", "  ")
	if err != nil {
		return upgradeSnapshot{}, err
	}
	if err := writeFileAtomic(filepath.Join(up, name+".json"), meta, 0o600); err != nil {
		return upgradeSnapshot{}, err
	}
	return upgradeSnapshot{Stream: name, Msgs: resp.State.Msgs, LastSeq: resp.State.LastSeq, Bytes: n}, nil
}

// restoreSnapshot asks the server to restore the snapshot at path as the
// stream meta describes, and sends it in chunks, each a request the
// server answers; an empty request ends it, and its answer, once the
// stream is restored, is a stream create response.
func restoreSnapshot(ctx context.Context, nc *nats.Conn, meta snapshotMeta, path string) error {
	req, err := json.Marshal(server.JSApiStreamRestoreRequest{Config: meta.Config, State: meta.State})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	msg, err := nc.RequestWithContext(rctx, fmt.Sprintf(server.JSApiStreamRestoreT, meta.Config.Name), req)
	cancel()
	if err != nil {
		return fmt.Errorf("request a restore: %w", err)
	}
	var resp server.JSApiStreamRestoreResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("restore response %q: %w", msg.Data, err)
	}
	if err := apiError(resp.Error); err != nil {
		return fmt.Errorf("request a restore: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 128<<10)
	for sent := 0; ; {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if err := requestChunk(ctx, nc, resp.DeliverSubject, buf[:n], 30*time.Second); err != nil {
				return fmt.Errorf("send the snapshot after %d bytes: %w", sent, err)
			}
			sent += n
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	// The empty message ends the snapshot; its answer comes once the
	// server has restored the stream.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	msg, err = nc.RequestWithContext(dctx, resp.DeliverSubject, nil)
	for errors.Is(err, nats.ErrNoResponders) && sleepCtx(dctx, 50*time.Millisecond) {
		msg, err = nc.RequestWithContext(dctx, resp.DeliverSubject, nil) // an empty snapshot
	}
	cancel()
	if err != nil {
		return fmt.Errorf("finish the restore: %w", err)
	}
	var done server.JSApiStreamCreateResponse
	if err := json.Unmarshal(msg.Data, &done); err != nil {
		return fmt.Errorf("restore result %q: %w", msg.Data, err)
	}
	if err := apiError(done.Error); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// requestChunk sends one chunk of a restore and checks the answer. The
// stream's node may be another than ours: until its interest in the
// subject reaches us, nobody answers, and nothing was sent.
func requestChunk(ctx context.Context, nc *nats.Conn, subject string, data []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subject, data)
	for errors.Is(err, nats.ErrNoResponders) && sleepCtx(ctx, 50*time.Millisecond) {
		msg, err = nc.RequestWithContext(ctx, subject, data)
	}
	if err != nil {
		return err
	}
	if len(msg.Data) == 0 {
		return nil
	}
	var r server.ApiResponse
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return fmt.Errorf("answer %q: %w", msg.Data, err)
	}
	return apiError(r.Error)
}

// syncDir makes the entries of dir (a rename, a new file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

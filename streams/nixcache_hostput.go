package streams

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/pinkiefleet/pinkie/nixcache"
)

// UploadPaths uploads local store paths (their narinfos unsigned: hosts
// do not hold the fleet's secret key) into the hub's cache over the
// agent's leaf link, on this host's own upload subjects (NixCachePutHost),
// each NAR read straight from the store; the hub signs each narinfo it
// takes with the fleet's key. Only the paths the cache lacks are sent.
func (s *NixSubstituter) UploadPaths(ctx context.Context, infos []*nixcache.NarInfo) (NixUploadStats, error) {
	s.mu.Lock()
	nc := s.nc
	s.mu.Unlock()
	if nc == nil {
		return NixUploadStats{}, errors.New("upload to the hub's cache: the agent's nix cache link is not connected yet")
	}
	defer s.beginTransfer()()
	st, err := UploadNixPaths(ctx, connRequester{nc}, NixCachePutHost(s.host), NixStorePaths(infos))
	if err != nil {
		return st, fmt.Errorf("upload to the hub's cache: %w", err)
	}
	s.log.Info("uploaded to the hub's nix cache", "paths", st.Paths, "missing", st.Missing, "bytes_sent", st.BytesSent)
	return st, nil
}

// connRequester is a Requester over a plain connection; a refused or
// unanswered request is an error naming the subject.
type connRequester struct{ nc *nats.Conn }

func (r connRequester) Request(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	resp, err := r.nc.RequestMsgWithContext(ctx, m)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("no answer on %s: the hub is not reachable over the leaf link", m.Subject)
	}
	return resp, err
}

// Command xferbench measures how a closure travels through the hub's Nix
// cache (issue 12), against nix copy through a file:// cache, in one run on
// one machine: a generated closure (≥ 1,000 store paths of random bytes,
// ≥ 300 MB; -small for a quick check) is signed into a binary cache
// directory as a builder does, uploaded to a real `pinkie hub` process over
// NATS as an operator, and fetched by real nix into a store of its own
// through a real `pinkie agent` process's loopback substituter (over its
// leaf link), with signature checks on. The baseline is `nix copy` of the
// same closure to a file:// cache and from it into a fresh store. Then one
// path changes and the second deploy's bytes are counted. It prints the
// rates and their ratio, the bytes sent for the change, and the peak RSS
// (VmHWM) of the hub and agent processes during the transfers. Run it
// through scripts/bench/deploy-transfer.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pinkiefleet/pinkie/deploy/nix"
	"github.com/pinkiefleet/pinkie/nixcache"
	"github.com/pinkiefleet/pinkie/streams"
)

type result struct {
	Paths        int    `json:"paths"`
	NarBytes     int64  `json:"nar_bytes"`
	FileBytes    int64  `json:"file_bytes"`
	Compression  string `json:"compression"`
	UploadWindow int    `json:"upload_window"`
	UploadPaths  int    `json:"upload_parallel"`

	SignSeconds   float64 `json:"builder_sign_seconds"`
	UploadSeconds float64 `json:"upload_seconds"`
	FetchSeconds  float64 `json:"target_fetch_seconds"`
	PinkieSeconds float64 `json:"pinkie_seconds"`
	PinkieMBps    float64 `json:"pinkie_mb_per_sec"`

	BaseToSeconds   float64 `json:"baseline_to_file_seconds"`
	BaseFromSeconds float64 `json:"baseline_from_file_seconds"`
	BaseSeconds     float64 `json:"baseline_seconds"`
	BaseMBps        float64 `json:"baseline_mb_per_sec"`

	// Each round's totals; the figures above are each leg's best round.
	Rounds             int       `json:"rounds"`
	RoundBaseSeconds   []float64 `json:"round_baseline_seconds"`
	RoundPinkieSeconds []float64 `json:"round_pinkie_seconds"`

	Ratio      float64                `json:"ratio"`
	FetchRatio float64                `json:"fetch_ratio"`
	Upload     streams.NixUploadStats `json:"upload"`

	Change change `json:"one_path_change"`

	// Streamed: the builder streams the paths the hub lacks straight from
	// its store (UploadNixPaths: no file:// copy first), the rest as above.
	Streamed streamed `json:"streamed"`

	HubIdleRSSMiB   float64 `json:"hub_idle_rss_mib"`
	AgentIdleRSSMiB float64 `json:"agent_idle_rss_mib"`
	HubPeakRSSMiB   float64 `json:"hub_peak_rss_mib"`
	AgentPeakRSSMiB float64 `json:"agent_peak_rss_mib"`
	// The hub's peaks in the upload and in the fetch of the first deploy.
	HubUploadPeakRSSMiB float64 `json:"hub_upload_peak_rss_mib"`
	HubFetchPeakRSSMiB  float64 `json:"hub_fetch_peak_rss_mib"`
}

// streamed is the upload that reads NARs from the store (nix store
// dump-path) instead of a binary cache directory.
type streamed struct {
	UploadSeconds float64 `json:"upload_seconds"`
	FetchSeconds  float64 `json:"target_fetch_seconds"`
	PinkieSeconds float64 `json:"pinkie_seconds"`
	// The fetch in parts: the agent's prefetch from the hub (asking the
	// target's store what it lacks included), then nix copying from it.
	PrefetchSeconds float64 `json:"target_prefetch_seconds"`
	CopySeconds     float64 `json:"target_nix_copy_seconds"`
	// CPU seconds (user and system) the hub and the agent spent on the
	// upload and the fetch: on a shared machine, steadier than the times.
	HubUploadCPU   float64                `json:"hub_upload_cpu_seconds"`
	HubFetchCPU    float64                `json:"hub_fetch_cpu_seconds"`
	AgentFetchCPU  float64                `json:"agent_fetch_cpu_seconds"`
	Rounds         []float64              `json:"round_seconds"`
	Ratio          float64                `json:"ratio"`
	Upload         streams.NixUploadStats `json:"upload"`
	ChangeUpload   streams.NixUploadStats `json:"one_path_change_upload"`
	ChangeSeconds  float64                `json:"one_path_change_upload_seconds"`
	HubPeakRSSMiB  float64                `json:"hub_peak_rss_mib"`
	AgentPeakRSSMB float64                `json:"agent_peak_rss_mib"`
}

// change is the second deploy, after one path changed (and so the root
// that refers to it).
type change struct {
	NewPaths       int                    `json:"new_paths"`
	NewFileBytes   int64                  `json:"new_file_bytes"`
	SignSeconds    float64                `json:"builder_sign_seconds"`
	Upload         streams.NixUploadStats `json:"upload"`
	UploadSeconds  float64                `json:"upload_seconds"`
	FetchSeconds   float64                `json:"target_fetch_seconds"`
	AgentReadBytes int64                  `json:"agent_read_bytes"`
}

func main() {
	small := flag.Bool("small", false, "a quick check: 201 paths, 40 MiB")
	paths := flag.Int("paths", 1000, "store paths besides the root")
	mib := flag.Int("mib", 320, "closure size in MiB (half in every 50th path, half spread over the rest)")
	seed := flag.String("seed", "pinkie-xfer-1", "seed of the generated paths (the same seed reuses the paths built before)")
	compression := flag.String("compression", "zstd", "compression of the binary cache directories (xz is nix's default and what `nix copy --to file://` uses unless told)")
	parallel := flag.Int("parallel", 8, "paths uploaded at once")
	window := flag.Int("window", 4, "chunks of a NAR on their way at once")
	bin := flag.String("pinkie", "", "the pinkie binary (scripts/bench/deploy-transfer builds it)")
	asJSON := flag.Bool("json", false, "print JSON")
	keep := flag.Bool("keep", false, "keep the work directory (logs of the hub and agent)")
	agentMem := flag.String("agent-memory-limit", "", "the agent's --memory-limit (default: the agent's own default)")
	rounds := flag.Int("rounds", 3, "rounds of both sides, each with a fresh hub, agent and stores; each side's best round counts")
	flag.Parse()
	if *small {
		*paths, *mib = 200, 40
	}
	b := &bench{bin: *bin, seed: *seed, paths: *paths, mib: *mib, compression: *compression, parallel: *parallel, window: *window, agentMem: *agentMem, rounds: max(*rounds, 1)}
	res, err := b.run(*keep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xferbench:", err)
		os.Exit(1)
	}
	if *asJSON {
		out, _ := json.MarshalIndent(res, "", "  ")
		fmt.Println(string(out))
		return
	}
	printResult(res)
}

type bench struct {
	bin, seed, compression      string
	paths, mib                  int
	parallel, window, rounds    int
	dir, auth, pubKey, agentMem string
	procs                       []*proc
	// lastPrefetch is how long the last fetch's prefetch took.
	lastPrefetch time.Duration
}

func (b *bench) run(keep bool) (res result, err error) {
	if b.bin == "" {
		return res, errors.New("-pinkie BIN is required (scripts/bench/deploy-transfer passes it)")
	}
	if b.dir, err = os.MkdirTemp("", "pinkie-xfer-"); err != nil {
		return res, err
	}
	defer func() {
		for _, p := range b.procs {
			p.stop()
		}
		if keep || err != nil {
			fmt.Fprintln(os.Stderr, "xferbench: work directory kept:", b.dir)
		} else {
			os.RemoveAll(b.dir)
		}
	}()
	res.Compression, res.UploadPaths, res.UploadWindow, res.Rounds = b.compression, b.parallel, b.window, b.rounds

	// The fleet's keys, and the closure.
	b.auth = filepath.Join(b.dir, "auth")
	if out, err := exec.Command(b.bin, "keys", "init", b.auth, "--hosts", "target").CombinedOutput(); err != nil {
		return res, fmt.Errorf("pinkie keys init: %v: %s", err, out)
	}
	pub, err := os.ReadFile(streams.NixPublicKeyFile(b.auth))
	if err != nil {
		return res, err
	}
	b.pubKey = strings.TrimSpace(string(pub))
	fmt.Fprintf(os.Stderr, "xferbench: building %d paths, %d MiB (seed %s)…\n", b.paths+1, b.mib, b.seed)
	root, err := b.build(b.seed + "-leaf1")
	if err != nil {
		return res, err
	}
	closure, err := b.pathInfo(root)
	if err != nil {
		return res, err
	}
	res.Paths = len(closure)
	for _, p := range closure {
		res.NarBytes += p.NarSize
	}

	// Rounds, each leg's best kept: the machine is shared, and a round
	// slowed by a neighbour says little about either side.
	for round := 1; round <= b.rounds; round++ {
		fmt.Fprintf(os.Stderr, "xferbench: round %d of %d: baseline, then pinkie…\n", round, b.rounds)
		var r result
		if err := b.baseline(round, root, &r); err != nil {
			return res, err
		}
		last := round == b.rounds
		if err := b.pinkie(round, root, closure, last, &r); err != nil {
			return res, err
		}
		var st streamed
		if err := b.streamedRound(round, root, last, &st); err != nil {
			return res, err
		}
		res.Streamed.Rounds = append(res.Streamed.Rounds, st.PinkieSeconds)
		if round == 1 || st.PinkieSeconds < res.Streamed.PinkieSeconds {
			rounds := res.Streamed.Rounds
			hub, agent := max(res.Streamed.HubPeakRSSMiB, st.HubPeakRSSMiB), max(res.Streamed.AgentPeakRSSMB, st.AgentPeakRSSMB)
			change, changeSeconds := res.Streamed.ChangeUpload, res.Streamed.ChangeSeconds
			res.Streamed = st
			res.Streamed.Rounds, res.Streamed.HubPeakRSSMiB, res.Streamed.AgentPeakRSSMB = rounds, hub, agent
			if !last {
				res.Streamed.ChangeUpload, res.Streamed.ChangeSeconds = change, changeSeconds
			}
		} else if last {
			res.Streamed.ChangeUpload, res.Streamed.ChangeSeconds = st.ChangeUpload, st.ChangeSeconds
		}
		res.Streamed.HubPeakRSSMiB = max(res.Streamed.HubPeakRSSMiB, st.HubPeakRSSMiB)
		res.Streamed.AgentPeakRSSMB = max(res.Streamed.AgentPeakRSSMB, st.AgentPeakRSSMB)
		res.RoundBaseSeconds = append(res.RoundBaseSeconds, r.BaseSeconds)
		res.RoundPinkieSeconds = append(res.RoundPinkieSeconds, r.PinkieSeconds)
		if round == 1 || r.BaseSeconds < res.BaseSeconds {
			res.BaseToSeconds, res.BaseFromSeconds, res.BaseSeconds = r.BaseToSeconds, r.BaseFromSeconds, r.BaseSeconds
		}
		if round == 1 || r.PinkieSeconds < res.PinkieSeconds {
			res.SignSeconds, res.UploadSeconds, res.FetchSeconds, res.PinkieSeconds = r.SignSeconds, r.UploadSeconds, r.FetchSeconds, r.PinkieSeconds
			res.Upload, res.FileBytes = r.Upload, r.FileBytes
		}
		res.HubIdleRSSMiB, res.AgentIdleRSSMiB = max(res.HubIdleRSSMiB, r.HubIdleRSSMiB), max(res.AgentIdleRSSMiB, r.AgentIdleRSSMiB)
		res.HubUploadPeakRSSMiB = max(res.HubUploadPeakRSSMiB, r.HubUploadPeakRSSMiB)
		res.HubFetchPeakRSSMiB = max(res.HubFetchPeakRSSMiB, r.HubFetchPeakRSSMiB)
		res.HubPeakRSSMiB = max(res.HubPeakRSSMiB, r.HubPeakRSSMiB)
		res.AgentPeakRSSMiB = max(res.AgentPeakRSSMiB, r.AgentPeakRSSMiB)
		if last {
			res.Change = r.Change
		}
	}
	mb := float64(res.NarBytes) / 1e6
	res.PinkieMBps, res.BaseMBps = mb/res.PinkieSeconds, mb/res.BaseSeconds
	res.Ratio = res.BaseSeconds / res.PinkieSeconds
	res.FetchRatio = res.BaseFromSeconds / res.FetchSeconds
	res.Streamed.Ratio = res.BaseSeconds / res.Streamed.PinkieSeconds
	return res, nil
}

// streamedRound: a fresh hub and agent; the builder streams the closure's
// NARs from its store (nix store dump-path) into the hub; the target
// fetches through the agent. On the last round, the one-path change's
// upload too.
func (b *bench) streamedRound(round int, root string, change bool, st *streamed) error {
	ctx := context.Background()
	hub, natsURL, leafURL, err := b.startHub(100 + round)
	if err != nil {
		return err
	}
	defer b.stop(hub)
	agent, subURL, err := b.startAgent(100+round, leafURL)
	if err != nil {
		return err
	}
	defer b.stop(agent)
	if err := resetPeaks(hub, agent); err != nil {
		return err
	}
	c, err := streams.Connect(ctx, natsURL, streams.OperatorSeedFile(b.auth), "xferbench")
	if err != nil {
		return err
	}
	defer c.Close()
	key, err := nixcache.ReadSecretKeyFile(streams.NixSecretKeyFile(b.auth))
	if err != nil {
		return err
	}
	upload := func(root string) (streams.NixUploadStats, float64, error) {
		var stats streams.NixUploadStats
		t, err := b.timed(func() error {
			paths, err := b.storePaths(root, key)
			if err != nil {
				return err
			}
			stats, err = streams.UploadNixPaths(ctx, c, streams.NixCachePutOperator, paths, streams.UploadParallel(b.parallel), streams.UploadWindow(b.window))
			return err
		})
		return stats, t, err
	}
	hub0, agent0 := cpuSeconds(hub), cpuSeconds(agent)
	if st.Upload, st.UploadSeconds, err = upload(root); err != nil {
		return err
	}
	hub1 := cpuSeconds(hub)
	st.HubUploadCPU = hub1 - hub0
	if st.FetchSeconds, err = b.timed(b.fetch(subURL, filepath.Join(b.dir, fmt.Sprintf("target-store-streamed-%d", round)), root)); err != nil {
		return err
	}
	st.HubFetchCPU, st.AgentFetchCPU = cpuSeconds(hub)-hub1, cpuSeconds(agent)-agent0
	st.PrefetchSeconds, st.CopySeconds = b.lastPrefetch.Seconds(), st.FetchSeconds-b.lastPrefetch.Seconds()
	st.PinkieSeconds = st.UploadSeconds + st.FetchSeconds
	if change {
		root2, err := b.build(b.seed + "-leaf1-changed")
		if err != nil {
			return err
		}
		if st.ChangeUpload, st.ChangeSeconds, err = upload(root2); err != nil {
			return err
		}
	}
	st.HubPeakRSSMiB, _ = rssMiB(hub.cmd.Process.Pid, "VmHWM")
	st.AgentPeakRSSMB, _ = rssMiB(agent.cmd.Process.Pid, "VmHWM")
	return nil
}

// storePaths is root's closure as paths to stream from the store, each
// with a narinfo signed by key (what nix copy --to file://…?secret-key
// writes, uncompressed), read from nix path-info.
func (b *bench) storePaths(root string, key nixcache.SecretKey) ([]streams.NixUploadPath, error) {
	out, err := b.nix("path-info", "--json", "-r", root)
	if err != nil {
		return nil, err
	}
	var infos []nix.PathInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		return nil, fmt.Errorf("nix path-info --json: %w", err)
	}
	nis := make([]*nixcache.NarInfo, 0, len(infos))
	for _, p := range infos {
		ni, err := p.NarInfo()
		if err != nil {
			return nil, err
		}
		if err := ni.Sign(key); err != nil {
			return nil, err
		}
		nis = append(nis, ni)
	}
	return streams.NixStorePaths(nis), nil
}

// baseline: nix copy to a file:// cache and from it into a fresh store.
func (b *bench) baseline(round int, root string, r *result) (err error) {
	cache := filepath.Join(b.dir, fmt.Sprintf("baseline-cache-%d", round))
	if r.BaseToSeconds, err = b.timed(b.signTo(cache, root)); err != nil {
		return err
	}
	if r.BaseFromSeconds, err = b.timed(b.fetch("file://"+cache, filepath.Join(b.dir, fmt.Sprintf("baseline-store-%d", round)), root)); err != nil {
		return err
	}
	r.BaseSeconds = r.BaseToSeconds + r.BaseFromSeconds
	return nil
}

// pinkie: a fresh hub and target agent, the builder's signed directory
// uploaded, the target's nix fetching through the agent; on the last
// round, the second deploy after one path changed.
func (b *bench) pinkie(round int, root string, closure map[string]pathInfo, change bool, r *result) error {
	ctx := context.Background()
	hub, natsURL, leafURL, err := b.startHub(round)
	if err != nil {
		return err
	}
	defer b.stop(hub)
	agent, subURL, err := b.startAgent(round, leafURL)
	if err != nil {
		return err
	}
	defer b.stop(agent)
	r.HubIdleRSSMiB, _ = rssMiB(hub.cmd.Process.Pid, "VmRSS")
	r.AgentIdleRSSMiB, _ = rssMiB(agent.cmd.Process.Pid, "VmRSS")
	// The peaks from here on: the transfers'.
	if err := resetPeaks(hub, agent); err != nil {
		return err
	}
	c, err := streams.Connect(ctx, natsURL, streams.OperatorSeedFile(b.auth), "xferbench")
	if err != nil {
		return err
	}
	defer c.Close()
	upDir := filepath.Join(b.dir, fmt.Sprintf("builder-cache-%d", round))
	if r.SignSeconds, err = b.timed(b.signTo(upDir, root)); err != nil {
		return err
	}
	r.FileBytes = dirBytes(upDir)
	r.UploadSeconds, err = b.timed(func() (err error) {
		r.Upload, err = streams.UploadNixCacheDir(ctx, c, streams.NixCachePutOperator, upDir, streams.UploadParallel(b.parallel), streams.UploadWindow(b.window))
		return err
	})
	if err != nil {
		return err
	}
	r.HubUploadPeakRSSMiB, _ = rssMiB(hub.cmd.Process.Pid, "VmHWM")
	if err := resetPeaks(hub); err != nil {
		return err
	}
	targetStore := filepath.Join(b.dir, fmt.Sprintf("target-store-%d", round))
	if r.FetchSeconds, err = b.timed(b.fetch(subURL, targetStore, root)); err != nil {
		return err
	}
	r.HubFetchPeakRSSMiB, _ = rssMiB(hub.cmd.Process.Pid, "VmHWM")
	r.PinkieSeconds = r.SignSeconds + r.UploadSeconds + r.FetchSeconds

	if change {
		if err := b.change(ctx, c, agent, subURL, targetStore, closure, r); err != nil {
			return err
		}
	}
	hubPeak, _ := rssMiB(hub.cmd.Process.Pid, "VmHWM")
	r.HubPeakRSSMiB = max(hubPeak, r.HubUploadPeakRSSMiB, r.HubFetchPeakRSSMiB)
	r.AgentPeakRSSMiB, _ = rssMiB(agent.cmd.Process.Pid, "VmHWM")
	return nil
}

// change is the second deploy: one path changed (so the root that refers
// to it); what is uploaded and fetched.
func (b *bench) change(ctx context.Context, c *streams.Client, agent *proc, subURL, targetStore string, closure map[string]pathInfo, r *result) error {
	fmt.Fprintln(os.Stderr, "xferbench: one path changed: the second deploy…")
	root2, err := b.build(b.seed + "-leaf1-changed")
	if err != nil {
		return err
	}
	closure2, err := b.pathInfo(root2)
	if err != nil {
		return err
	}
	upDir2 := filepath.Join(b.dir, "builder-cache-change")
	if r.Change.SignSeconds, err = b.timed(b.signTo(upDir2, root2)); err != nil {
		return err
	}
	for p := range closure2 {
		if _, ok := closure[p]; !ok {
			r.Change.NewPaths++
			r.Change.NewFileBytes += narFileBytes(upDir2, p)
		}
	}
	r.Change.UploadSeconds, err = b.timed(func() (err error) {
		r.Change.Upload, err = streams.UploadNixCacheDir(ctx, c, streams.NixCachePutOperator, upDir2, streams.UploadParallel(b.parallel), streams.UploadWindow(b.window))
		return err
	})
	if err != nil {
		return err
	}
	before, _ := readBytes(agent.cmd.Process.Pid)
	if r.Change.FetchSeconds, err = b.timed(b.fetch(subURL, targetStore, root2)); err != nil {
		return err
	}
	after, _ := readBytes(agent.cmd.Process.Pid)
	r.Change.AgentReadBytes = after - before
	return nil
}

func printResult(r result) {
	mib := float64(r.NarBytes) / (1 << 20)
	fmt.Printf("closure: %d paths, %.0f MiB of NARs (%.0f MiB as %s files)\n", r.Paths, mib, float64(r.FileBytes)/(1<<20), r.Compression)
	fmt.Printf("baseline  nix copy to file:// %.1f s + from file:// %.1f s = %.1f s  %.1f MB/s\n", r.BaseToSeconds, r.BaseFromSeconds, r.BaseSeconds, r.BaseMBps)
	fmt.Printf("via dir   (the old way: nix copy to a signed file:// dir first) builder signs %.1f s + upload %.1f s + target fetch %.1f s = %.1f s  %.1f MB/s\n", r.SignSeconds, r.UploadSeconds, r.FetchSeconds, r.PinkieSeconds, r.PinkieMBps)
	fmt.Printf("rounds    baseline %s s, pinkie %s s (the best of %d counts)\n", seconds(r.RoundBaseSeconds), seconds(r.RoundPinkieSeconds), r.Rounds)
	fmt.Printf("ratio     %.2f via dir (rate / baseline rate); the fetch leg alone %.2f of nix copy from file://\n", r.Ratio, r.FetchRatio)
	fmt.Printf("upload    %d paths, %d missing, %d bytes sent (%d again), %d retries; %d at once, %d chunks in flight\n",
		r.Upload.Paths, r.Upload.Missing, r.Upload.BytesSent, r.Upload.BytesResent, r.Upload.Retries, r.UploadPaths, r.UploadWindow)
	c := r.Change
	fmt.Printf("one-path change: %d new paths (the changed one and the root), %d bytes of NAR files\n", c.NewPaths, c.NewFileBytes)
	fmt.Printf("          upload: %d missing, %d bytes sent in %.2f s (the builder signed the whole closure again first: %.1f s)\n", c.Upload.Missing, c.Upload.BytesSent, c.UploadSeconds, c.SignSeconds)
	fmt.Printf("          target fetch %.2f s; the agent read %d bytes meanwhile\n", c.FetchSeconds, c.AgentReadBytes)
	sr := r.Streamed
	fmt.Printf("streamed  (what pinkie deploy and builders do) upload straight from the store %.1f s + target fetch %.1f s = %.1f s (rounds %s s): RATIO %.2f (target ≥ 0.5)\n", sr.UploadSeconds, sr.FetchSeconds, sr.PinkieSeconds, seconds(sr.Rounds), sr.Ratio)
	fmt.Printf("          the fetch: the agent's prefetch from the hub %.1f s, then nix copy from it %.1f s; CPU: hub %.1f s (upload) + %.1f s (fetch), agent %.1f s\n",
		sr.PrefetchSeconds, sr.CopySeconds, sr.HubUploadCPU, sr.HubFetchCPU, sr.AgentFetchCPU)
	fmt.Printf("          one-path change: %d missing, %d bytes sent, %.2f s with nothing signed or copied first; peak RSS hub %.1f MiB, agent %.1f MiB\n",
		sr.ChangeUpload.Missing, sr.ChangeUpload.BytesSent, sr.ChangeSeconds, sr.HubPeakRSSMiB, sr.AgentPeakRSSMB)
	fmt.Printf("peak RSS  hub %.1f MiB (idle %.1f; upload %.1f, fetch %.1f), agent %.1f MiB (idle %.1f) during the transfers\n",
		r.HubPeakRSSMiB, r.HubIdleRSSMiB, r.HubUploadPeakRSSMiB, r.HubFetchPeakRSSMiB, r.AgentPeakRSSMiB, r.AgentIdleRSSMiB)
}

func seconds(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', 1, 64))
	}
	return strings.Join(parts, ", ")
}

// closureNix generates the closure: n leaves of random bytes (every 50th
// one large) and a root that refers to them all. Leaf 1's seed is its
// own, to change one path.
const closureNix = `{ seed, leaf1, n, bigKiB, smallKiB }:
let
  leaf = i: derivation {
    name = "xfer-${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    seed = if i == 1 then leaf1 else seed;
    args = [ "-c" "/bin/dd if=/dev/urandom of=$out bs=1024 count=${toString (if i - (i / 50) * 50 == 0 then bigKiB else smallKiB)} 2>/dev/null" ];
  };
in derivation {
  name = "xfer-root";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  leaves = builtins.genList leaf n;
  args = [ "-c" "echo $leaves > $out" ];
}
`

// nixEnv is what nix runs with: no sandbox, no substituters, the fleet's
// key trusted.
func (b *bench) nixEnv() []string {
	conf := "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false\n" +
		"trusted-public-keys = " + b.pubKey + "\nmax-jobs = 4\n"
	return append(os.Environ(), "NIX_CONFIG="+conf, "XDG_CACHE_HOME="+filepath.Join(b.dir, "xdg-cache-"+strconv.FormatInt(time.Now().UnixNano(), 10)))
}

func (b *bench) nix(args ...string) (string, error) {
	cmd := exec.Command("nix", args...)
	cmd.Env = b.nixEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("nix %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

func (b *bench) build(leaf1 string) (string, error) {
	file := filepath.Join(b.dir, "closure.nix")
	if err := os.WriteFile(file, []byte(closureNix), 0o644); err != nil {
		return "", err
	}
	big := max(b.paths/50, 1)
	bigKiB := b.mib * 1024 / 2 / big
	smallKiB := b.mib * 1024 / 2 / max(b.paths-big, 1)
	out, err := b.nix("build", "--no-link", "--json", "-f", file, "--argstr", "seed", b.seed, "--argstr", "leaf1", leaf1,
		"--arg", "n", strconv.Itoa(b.paths), "--arg", "bigKiB", strconv.Itoa(bigKiB), "--arg", "smallKiB", strconv.Itoa(smallKiB))
	if err != nil {
		return "", err
	}
	var res []struct{ Outputs map[string]string }
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		return "", fmt.Errorf("nix build --json: %q: %v", out, err)
	}
	return res[0].Outputs["out"], nil
}

type pathInfo struct {
	Path    string `json:"path"`
	NarSize int64  `json:"narSize"`
}

// pathInfo is root's closure by store path.
func (b *bench) pathInfo(root string) (map[string]pathInfo, error) {
	out, err := b.nix("path-info", "--json", "-r", root)
	if err != nil {
		return nil, err
	}
	var infos []pathInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		return nil, fmt.Errorf("nix path-info --json: %w", err)
	}
	m := map[string]pathInfo{}
	for _, p := range infos {
		m[p.Path] = p
	}
	return m, nil
}

// signTo copies root's closure into a signed binary cache directory, as
// a builder does before it uploads (and as the baseline's first half).
func (b *bench) signTo(dir, root string) func() error {
	return func() error {
		_, err := b.nix("copy", "--to", "file://"+dir+"?secret-key="+streams.NixSecretKeyFile(b.auth)+"&compression="+b.compression, root)
		return err
	}
}

// fetch copies root's closure from a binary cache into a store of its own
// (a chroot store: nothing found in the machine's /nix), signatures
// checked.
//
// From the agent's substituter (http://), the fetch is what the activator
// does: the agent prefetches the closure (POST /prefetch with the paths
// the store lacks; one closure request to the hub, the missing NARs
// pulled several at once) while nix copies.
func (b *bench) fetch(from, store, root string) func() error {
	return func() error {
		if strings.HasPrefix(from, "http://") {
			start := time.Now()
			local, release, err := b.prefetch(from, store, root)
			b.lastPrefetch = time.Since(start)
			if err != nil {
				return err
			}
			defer release()
			from = local
		}
		_, err := b.nix("copy", "--from", from, "--to", store, root)
		return err
	}
}

// prefetch asks the agent's substituter at sub to prefetch root's closure
// for store: from is where nix copies from then; release ends it.
func (b *bench) prefetch(sub, store, root string) (from string, release func(), err error) {
	closure, err := b.nix("path-info", "-r", root)
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("nix-store", append([]string{"--store", store, "--check-validity", "--print-invalid"}, strings.Fields(closure)...)...)
	cmd.Env = b.nixEnv()
	lacking, err := cmd.Output()
	if err != nil {
		return "", nil, fmt.Errorf("nix-store --check-validity in %s: %w", store, err)
	}
	res, err := http.Post(sub+"/prefetch?path="+root, "text/plain", strings.NewReader(string(lacking)))
	if err != nil {
		return "", nil, fmt.Errorf("prefetch: %w", err)
	}
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if res.StatusCode != http.StatusOK || err != nil {
		res.Body.Close()
		return "", nil, fmt.Errorf("prefetch: %s %q %v", res.Status, line, err)
	}
	return strings.TrimSpace(line), func() { res.Body.Close() }, nil
}

func (b *bench) timed(f func() error) (float64, error) {
	start := time.Now()
	err := f()
	return time.Since(start).Seconds(), err
}

func (b *bench) startHub(round int) (p *proc, natsURL, leafURL string, err error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, "", "", err
	}
	natsAddr, leafAddr := "127.0.0.1:"+ports[0], "127.0.0.1:"+ports[1]
	p, err = b.start(fmt.Sprintf("hub-%d", round), "hub started", b.bin, "hub", "--data", filepath.Join(b.dir, fmt.Sprintf("hub-%d", round)), "--auth", b.auth,
		"--nats", natsAddr, "--leaf", leafAddr, "--http", "127.0.0.1:"+ports[2])
	return p, "nats://" + natsAddr, "nats-leaf://" + leafAddr, err
}

func (b *bench) startAgent(round int, leafURL string) (*proc, string, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, "", err
	}
	argv := []string{b.bin, "agent", "--name", "target", "--hub", leafURL, "--data", filepath.Join(b.dir, fmt.Sprintf("agent-%d", round)),
		"--nkey", streams.HostSeedFile(b.auth, "target"), "--reconnect", "200ms", "--producers", "heartbeat", "--heartbeat", "1h",
		"--system-profile", filepath.Join(b.dir, "profiles", "system"), "--activation", "direct", "--cache-listen", "127.0.0.1:" + ports[0]}
	if b.agentMem != "" {
		argv = append(argv, "--memory-limit", b.agentMem)
	}
	p, err := b.start(fmt.Sprintf("agent-%d", round), "hub connected", argv...)
	if err != nil {
		return nil, "", err
	}
	// Ready when a narinfo question reaches the hub (404: the cache lacks
	// it) rather than failing for want of the link.
	url := "http://127.0.0.1:" + ports[0]
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err := http.Get(url + "/" + strings.Repeat("0", 32) + ".narinfo")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusNotFound {
				return p, url, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("the agent's substituter did not reach the hub within 30s (see %s)", p.log)
		}
	}
}

// proc is a pinkie process with its output in a log file.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

// start runs a pinkie process and waits (up to 30 s) until its output
// says ready.
func (b *bench) start(name, ready string, argv ...string) (*proc, error) {
	p := &proc{name: name, log: filepath.Join(b.dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b.procs = append(b.procs, p)
	seen := make(chan struct{})
	go func() {
		defer close(p.done)
		defer f.Close()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		said := false
		for sc.Scan() {
			fmt.Fprintln(f, sc.Text())
			if !said && strings.Contains(sc.Text(), ready) {
				said = true
				close(seen)
			}
		}
		_, _ = io.Copy(f, out)
	}()
	select {
	case <-seen:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it said %q (see %s)", name, ready, p.log)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s did not say %q within 30s (see %s)", name, ready, p.log)
	}
}

// stop ends p (and forgets it).
func (b *bench) stop(p *proc) {
	p.stop()
	for i, q := range b.procs {
		if q == p {
			b.procs = append(b.procs[:i], b.procs[i+1:]...)
			break
		}
	}
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = p.cmd.Wait()
}

func freePorts(n int) ([]string, error) {
	var ports []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// resetPeaks starts the processes' VmHWM afresh (Linux: clear_refs 5).
func resetPeaks(ps ...*proc) error {
	for _, p := range ps {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0); err != nil {
			return fmt.Errorf("reset the peak RSS of %s: %w", p.name, err)
		}
	}
	return nil
}

// rssMiB reads a memory figure (VmRSS, VmHWM) of a process in MiB.
func rssMiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s for pid %d", field, pid)
}

// cpuSeconds is the user and system time p has used (/proc/PID/stat,
// in clock ticks of 1/100 s); 0 if unreadable.
func cpuSeconds(p *proc) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): utime and stime are the 12th and 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// readBytes is what a process has read through system calls (sockets
// included): /proc/PID/io's rchar.
func readBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no rchar for pid %d", pid)
}

// narFileBytes is the size of the NAR file a binary cache directory holds
// for store path p, with its narinfo.
func narFileBytes(dir, p string) int64 {
	info, err := os.ReadFile(filepath.Join(dir, filepath.Base(p)[:32]+".narinfo"))
	if err != nil {
		return 0
	}
	ni, err := nixcache.ParseNarInfo(info)
	if err != nil {
		return 0
	}
	fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(ni.URL)))
	if err != nil {
		return 0
	}
	return fi.Size() + int64(len(info))
}

// dirBytes is the size of the NAR files under a binary cache directory.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(filepath.Join(dir, "nar"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

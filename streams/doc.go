// Package streams is pinkie's NATS layer, the only package besides cmd that
// talks to NATS: the embedded hub and agent servers, the streams and KV
// buckets they hold, store-and-forward from each agent's OUTBOX to the hub,
// the runner of the hub's ingest check, nkey authentication and
// permissions, and the client connection the CLI uses. It runs consumers
// (runners, publishers, readers, a KV store with revisions) without
// knowing them: cmd gives each one in (HubOptions.IngestCheck,
// HubOptions.Services).
package streams

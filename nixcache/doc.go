// Package nixcache holds what a Nix binary cache needs that is not storage
// or transport: the fleet's signing keys in Nix's own text format
// (NAME:BASE64, as `nix key generate-secret` prints them), narinfo files
// (parsed strictly and bounded, formatted as Nix writes them), and the
// signatures on them: the fingerprint Nix signs, signing with a secret key
// and verifying against a set of trusted public keys.
//
// Everything here is checked against real nix 2.8 (tests in this package):
// keys made here are accepted by `nix store sign` and `nix store verify`,
// signatures nix makes verify here, and narinfos signed here are accepted by
// `nix copy --from file://…` with signature checks on.
//
// The package is pure Go: no NATS, no nix binary at run time. Where the
// cache lives (JetStream) and how it is served are other packages' business.
package nixcache

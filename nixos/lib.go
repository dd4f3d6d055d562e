// Package nixos is pinkie's NixOS integration. The modules, the flake's
// library and the VM test are Nix files in this directory; this Go package
// embeds the builtins-only library (lib.nix) so that `pinkie fleet` can
// apply the same fleet export to any flake that the flake's lib.fleet is.
package nixos

import _ "embed"

//go:embed lib.nix
var lib string

// Lib is the text of lib.nix: one Nix expression, an attribute set of
// functions, that needs only builtins.
func Lib() string { return lib }

// FleetApply is an expression for `nix eval FLAKE#nixosConfigurations
// --apply`: the fleet export of lib.nix, inlined, because pure evaluation
// may not import files from outside the evaluated flake.
func FleetApply() string { return "(" + lib + "\n).fleet" }

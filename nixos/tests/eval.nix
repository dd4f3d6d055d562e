# pinkie's modules under nixpkgs' real module system, for the tests
# (tests/nix_test.go nixModuleEval): lib.evalModules over a module, the
# NixOS (or nix-darwin) options it sets declared with their real types
# (nixos-options.nix, darwin-options.nix), this test host's facts, and the
# test's settings. Type errors, merges between modules and priorities
# (mkDefault, mkForce, mkBefore) are the module system's own.
#
#   import ./nixos/tests/eval.nix { lib = import …/nixpkgs-lib/lib; module = ./nixos/agent.nix;
#     set = { services.pinkie.agent = { enable = true; … }; }; }
#
# Returns the evaluated config (without _module) plus `failed` (the failed
# assertions' messages) and `agentConfig` (the agent's config file as the
# module renders it, or null). With raw = true: lib.evalModules' own result
# (options and config), for reading option declarations.
{ lib, module, set ? { }, platform ? "nixos", raw ? false }:
let
  fake = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };

  # nixpkgs' pkgs.formats.json: a type of JSON values (functions and
  # derivations are refused) and a generator that, here, keeps the value.
  jsonValue = with lib.types; nullOr (oneOf [ bool int float str path (attrsOf jsonValue) (listOf jsonValue) ]) // { description = "JSON value"; };
  pkgs = {
    pinkie = fake "pinkie";
    coreutils = fake "coreutils";
    smartmontools = fake "smartmontools";
    wireguard-tools = fake "wireguard-tools";
    util-linux = fake "util-linux";
    stdenv.hostPlatform.system = if platform == "darwin" then "aarch64-darwin" else "x86_64-linux";
    formats.json = _: {
      type = jsonValue;
      generate = name: value: fake name // { value = builtins.deepSeq value value; };
    };
  };

  evaluated = lib.evalModules {
    specialArgs = { inherit pkgs; };
    modules = [
      (if platform == "darwin" then ./darwin-options.nix else ./nixos-options.nix)
      # The test host.
      { networking.hostName = lib.mkDefault "goliath"; }
      module
      set
    ];
  };
  c = evaluated.config;
  agent = c.services.pinkie.agent or { };
in
if raw then evaluated else
removeAttrs c [ "_module" ] // {
  failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
  agentConfig = if agent.enable or false then (import ../lib.nix).agentConfig agent.producers else null;
}

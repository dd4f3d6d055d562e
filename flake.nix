{
  description = "pinkie: a NixOS fleet as an event-sourced system over NATS JetStream";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      # Builtins only: lib, the modules and the fleet export evaluate
      # without nixpkgs (tests/nix_test.go relies on it).
      pinkieLib = import ./nixos/lib.nix;

      linuxSystems = [ "x86_64-linux" "aarch64-linux" ];
      systems = linuxSystems ++ [ "x86_64-darwin" "aarch64-darwin" ];
      forSystems = list: f: builtins.listToAttrs (map (system: { name = system; value = f system; }) list);

      baseVersion = "0.1.0";
      version = "${baseVersion}-${self.shortRev or self.dirtyShortRev or "dirty"}";

      # The NAR hash of `go mod vendor`. After changing go.mod or go.sum, run
      # scripts/vendorhash --write (a test fails while it is stale).
      vendorHash = "sha256-pOHg8sbP2c9EjNftftRIUGOboJujCfTuhThQ55Tgw9I=";

      # The Go module without what does not go into the binary, so editing
      # docs or modules does not rebuild pinkie. Every Go file stays: `go
      # mod vendor` (and so vendorHash) depends on all of them.
      src = nixpkgs.lib.cleanSourceWith {
        src = nixpkgs.lib.cleanSource ./.;
        filter = path: type:
          let
            rel = nixpkgs.lib.removePrefix (toString ./. + "/") (toString path);
            base = baseNameOf path;
          in
          !(builtins.elem rel [ "flake.nix" "flake.lock" "docs" "nixos/tests" "vendor" "pinkie" ]
            || nixpkgs.lib.hasSuffix ".md" base
            || nixpkgs.lib.hasPrefix "result" base);
      };

      packageFor = pkgs: pkgs.callPackage ./nixos/package.nix { inherit src version vendorHash; };

      # The module with its package defaulting to this flake's.
      withPackage = module: { lib, pkgs, ... }: {
        imports = [ module ];
        services.pinkie.package = lib.mkDefault (packageFor pkgs);
      };
    in
    {
      # pinkie.lib.fleet nixosConfigurations: the declared fleet as JSON-ready
      # data (what `pinkie fleet sync` publishes); the rest is what the
      # modules use, for your own checks.
      lib = {
        inherit (pinkieLib) fleet deploymentDefaults goals producerNames hubProblems agentProblems deploymentProblems;
      };

      overlays.default = final: _prev: { pinkie = packageFor final; };

      packages = forSystems systems (system: rec {
        pinkie = packageFor nixpkgs.legacyPackages.${system};
        default = pinkie;
      });

      apps = forSystems systems (system: {
        default = {
          type = "app";
          program = "${self.packages.${system}.default}/bin/pinkie";
          meta.description = "pinkie's CLI: hub, agent, deploy, fleet, keys, pub, tail";
        };
      });

      nixosModules = {
        default = withPackage ./nixos;
        hub = withPackage ./nixos/hub.nix;
        agent = withPackage ./nixos/agent.nix;
        # Only the pinkie.deployment / pinkie.fleet options, for hosts that
        # run no agent but are deployed or listed.
        deployment = ./nixos/deployment.nix;
      };

      darwinModules.default = withPackage ./nixos/darwin.nix;

      checks =
        forSystems systems (system: { package = self.packages.${system}.default; })
        // forSystems linuxSystems (system: {
          package = self.packages.${system}.default;
          # Boots a hub and two agents, checks their events arrive and a
          # deploy activates (needs KVM).
          vm = import ./nixos/tests/fleet.nix {
            pkgs = nixpkgs.legacyPackages.${system};
            module = self.nixosModules.default;
          };
        });
    };
}

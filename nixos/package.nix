# pinkie, built with buildGoModule. The flake passes src, version and
# vendorHash (kept in flake.nix, where scripts/vendorhash updates it).
{ lib, buildGoModule, src, version, vendorHash }:
buildGoModule {
  pname = "pinkie";
  inherit src version vendorHash;
  # pinkie-agent is pinkie agent alone, without the hub linked in: what the
  # agent modules run (a smaller binary maps fewer pages on every host).
  subPackages = [ "cmd/pinkie" "cmd/pinkie-agent" ];
  env.CGO_ENABLED = "0";
  ldflags = [ "-s" "-w" "-X main.version=${version}" ];
  # The test suite needs a NATS network, real nix and more than a build
  # sandbox offers; it runs in scripts/test and CI, and the VM test
  # (nixos/tests/fleet.nix) runs the built binary end to end.
  doCheck = false;
  meta = {
    description = "A NixOS fleet as an event-sourced system over NATS JetStream: hub, agent, deploys";
    homepage = "https://github.com/pinkiefleet/pinkie";
    mainProgram = "pinkie";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
